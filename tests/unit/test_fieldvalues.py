"""Field values as Dovecot reads them: addresses in their normal form, against ipaddress."""

from __future__ import annotations

import ipaddress

from hypothesis import example, given, settings
from hypothesis import strategies as st

from saslauth import fieldvalues


def reference(value: bytes | None) -> str | None:
    """The normal form by the standard library alone, nothing remembered or matched."""
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.decode("ascii")))
    except (UnicodeDecodeError, ValueError):
        return None


_PIECES = st.sampled_from(
    ["0", "1", "9", "10", "01", "00", "99", "100", "199", "200", "249", "250", "255", "256",
     "300", "999", "1000", "4294967295", "", " ", "+1", "-1", "x"]
)
_DOTTED = st.lists(_PIECES, min_size=1, max_size=6).map(lambda parts: ".".join(parts).encode())
_OTHER = st.sampled_from(
    [b"::1", b"::FFFF:1.2.3.4", b"::ffff:1.2.3.4", b"2001:DB8::1", b"fe80::1%eth0", b"unknown",
     b"127.0.0.1\n", b"\xff", b"1.2.3.4 ", b"\xd9\xa1.2.3.4", b"0x7f.0.0.1", b"127.1"]
)


@settings(max_examples=1000)
@example(b"10.0.0.1")
@example(b"255.255.255.255")
@example(b"010.0.0.1")
@given(st.one_of(_DOTTED, _OTHER, st.binary(max_size=20)))
def test_address_is_the_normal_form(value: bytes) -> None:
    for _ in range(2):  # worked out, then remembered
        assert fieldvalues.address(value) == reference(value)


def test_address_memory_is_bounded() -> None:
    for number in range(fieldvalues._ADDRESSES_SIZE + 10):
        value = b"10.%d.%d.%d" % (number >> 16, (number >> 8) & 255, number & 255)
        assert fieldvalues.address(value) == value.decode()
    assert 0 < len(fieldvalues.ADDRESSES) <= fieldvalues._ADDRESSES_SIZE
    assert fieldvalues.address(None) is None and fieldvalues.address(b"") is None
