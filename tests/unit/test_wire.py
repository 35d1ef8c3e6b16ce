from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from saslauth import wire


@given(st.binary())
def test_escape_round_trip(value: bytes) -> None:
    escaped = wire.escape(value)
    assert not set(escaped) & {0, 9, 10, 13}
    assert wire.unescape(escaped) == value


@given(st.lists(st.binary(), min_size=1, max_size=6))
def test_fields_survive_a_line(fields: list[bytes]) -> None:
    line = wire.join_fields(wire.escape(f) for f in fields)
    assert line.count(b"\n") == 1
    assert wire.split_fields(line[:-1]) == fields


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"\x01t", b"\t"),
        (b"\x01n", b"\n"),
        (b"\x01r", b"\r"),
        (b"\x010", b"\x00"),
        (b"\x011", b"\x01"),
        (b"ser\x01vice", b"service"),  # escape before an ordinary byte is dropped
        (b"abc\x01", b"abc"),  # a lone escape at the end is dropped
        (b"\x01\x01t", b"\x01t"),
    ],
)
def test_unescape_vectors(raw: bytes, value: bytes) -> None:
    assert wire.unescape(raw) == value


def test_escape_bytes_exactly() -> None:
    assert wire.escape(b"a\tb\nc\rd\x01e\x00") == b"a\x01tb\x01nc\x01rd\x011e\x010"


def test_raw_tab_always_separates() -> None:
    assert wire.split_fields(b"a\x01\tb") == [b"a", b"b"]


@pytest.mark.parametrize(
    ("data", "decoded"),
    [
        (b"AGFsaWNlAHNlY3JldA==", b"\x00alice\x00secret"),
        (b"AGFsaWNl AHNlY3JldA==", b"\x00alice\x00secret"),
        (b"AGFs\taWNl\r\nAHNlY3JldA==", b"\x00alice\x00secret"),
        (b"", b""),
        (b"YQ==", b"a"),
        (b"AGFsaWNlAHNlY3JldA", None),  # missing padding
        (b"YWxpY2U=YQ==", None),  # data after the padding
        (b"=", None),
        (b"YQ=", None),
        (b"ab-_", None),  # URL-safe alphabet
        (b"!!!!", None),
        (b"@@@@", None),
    ],
)
def test_strict_base64(data: bytes, decoded: bytes | None) -> None:
    assert wire.b64decode(data) == decoded


@given(st.binary())
def test_base64_round_trip(data: bytes) -> None:
    assert wire.b64decode(wire.b64encode(data)) == data


@given(st.binary(max_size=64))
def test_base64_never_raises(data: bytes) -> None:
    result = wire.b64decode(data)
    assert result is None or isinstance(result, bytes)


@given(st.lists(st.text(), max_size=20))
def test_encode_name_is_encode_text_remembered(values: list[str]) -> None:
    for value in values + values:
        assert wire.encode_name(value) == wire.encode_text(value)
    assert len(wire._KNOWN) <= wire.KNOWN_LIMIT


def test_encode_name_memory_is_bounded() -> None:
    for number in range(wire.KNOWN_LIMIT + 10):
        assert wire.encode_name(f"user{number}\t") == b"user%d\x01t" % number
    assert 0 < len(wire._KNOWN) <= wire.KNOWN_LIMIT
