"""Field values of the auth protocol as Dovecot 2.3 reads them: request ids and versions
(``str_to_uint32``, also the rule for numbers in stored hashes), ports, and client/server
addresses in their normal form.
"""

from __future__ import annotations

import ipaddress
import re
import socket

MAX_ID = 2**32 - 1


def uint32(value: bytes, *, nonzero: bool = False) -> int | None:
    """Unsigned 32-bit decimal as Dovecot's str_to_uint32 accepts it (no sign, no spaces, any
    number of leading zeros)."""
    number = decimal(value, 10)
    if number is None or number > MAX_ID or (nonzero and number == 0):
        return None
    return number


def decimal(value: bytes, most: int) -> int | None:
    """ASCII digits with at most ``most`` after the leading zeros (any number of them, as
    Dovecot's str_to_* read), as a number; None otherwise.  int() alone refuses more than 4300
    digits with a ValueError, and a client or a stored hash could hold them."""
    if not value.isdigit():  # (bytes: ASCII digits only)
        return None
    digits = value.lstrip(b"0")
    if len(digits) > most:
        return None
    return int(digits) if digits else 0


# An IPv4 address as inet_ntop writes it: four decimal octets, no leading zeros.
_OCTET = rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = re.compile(rb"(?:%s\.){3}%s" % (_OCTET, _OCTET))
# address()'s answers by value (never "": a normal form is not empty), read by quick paths too.
ADDRESSES: dict[bytes, str | None] = {}
_ADDRESSES_SIZE = 4096  # distinct addresses remembered; the lot is forgotten when it is full


def address(value: bytes | None) -> str | None:
    """An address in its normal form.  Unparsable ones (empty, ``unknown``) are silently
    ignored, as in Dovecot.  Memoised: a server sees the same few ``lip`` and ``rip`` values."""
    if not value:
        return None
    known = ADDRESSES.get(value, "")  # "" is never remembered: a normal form is not empty
    if known != "":
        return known
    if _DOTTED_QUAD.fullmatch(value) is not None:  # its own normal form (normal_address's)
        normal: str | None = value.decode("ascii")
    else:
        try:
            normal = normal_address(value.decode("ascii"))
        except UnicodeDecodeError:
            normal = None
    if len(ADDRESSES) >= _ADDRESSES_SIZE:
        ADDRESSES.clear()
    ADDRESSES[value] = normal
    return normal


def normal_address(text: str) -> str | None:
    """``text`` as an IPv4 or IPv6 address in its normal form, or None."""
    try:  # fast path: a canonical dotted quad is its own normal form
        if socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, text)) == text:
            return text
    except (OSError, ValueError):  # (ValueError: a NUL in the text)
        pass
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def port(value: bytes | None) -> int | None:
    """A port number (1-65535), or None."""
    number = decimal(value, 5) if value else None
    return number if number is not None and 0 < number < 65536 else None
