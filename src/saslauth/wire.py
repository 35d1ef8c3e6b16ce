"""Pure codec for the Dovecot auth protocol: tab-escaping, field splitting, strict base64.

Every rule here is Dovecot 2.3 behaviour (``src/lib/strescape.c``, ``src/lib/base64.c``) as
recorded in ``dovecot-auth-protocol.md`` section 1.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable

# AUTH_CLIENT_MAX_LINE_LENGTH: Dovecot's read buffer is 16384 bytes, so a line of 16383 bytes
# plus its LF is the longest one processed; 16384 bytes without an LF closes the connection.
MAX_LINE = 16384

_ESCAPES = {0x00: b"\x010", 0x01: b"\x011", 0x09: b"\x01t", 0x0A: b"\x01n", 0x0D: b"\x01r"}
_UNESCAPES = {
    ord("0"): b"\x00",
    ord("1"): b"\x01",
    ord("t"): b"\t",
    ord("r"): b"\r",
    ord("n"): b"\n",
}
_NEEDS_ESCAPE = re.compile(rb"[\x00\x01\t\n\r]")
_ESCAPE_SEQ = re.compile(rb"\x01(.?)", re.DOTALL)
# Dovecot's base64 decoder (2.3.9+) skips these anywhere in the input.
_B64_SPACE = re.compile(rb"[ \t\r\n]")


def escape(value: bytes) -> bytes:
    """Tab-escape one field value (``str_append_tabescaped``)."""
    if value.isalnum() or _NEEDS_ESCAPE.search(value) is None:  # (ASCII letters and digits)
        return value
    return _NEEDS_ESCAPE.sub(lambda m: _ESCAPES[m.group()[0]], value)


def _unescape_one(match: re.Match[bytes]) -> bytes:
    follower = match.group(1)
    if not follower:  # a lone escape byte at the end of a field is dropped
        return b""
    # \001 + any other byte X yields X: the escape byte is dropped (observed: ser\001vice=smtp).
    return _UNESCAPES.get(follower[0], follower)


def unescape(field: bytes) -> bytes:
    """Undo tab-escaping of one field (``str_tabunescape``)."""
    if 1 not in field:  # (an int: a byte search is 5x cheaper than a bytes one)
        return field
    return _ESCAPE_SEQ.sub(_unescape_one, field)


def split_fields(line: bytes) -> list[bytes]:
    """Split a line on raw TABs, then unescape each field (a raw TAB always separates)."""
    if 1 not in line:  # the usual case: nothing escaped anywhere in the line
        return line.split(b"\t")
    return [unescape(f) for f in line.split(b"\t")]


def join_fields(fields: Iterable[bytes]) -> bytes:
    """Join already-escaped fields into one line, LF included."""
    return b"\t".join(fields) + b"\n"


def encode_text(value: str) -> bytes:
    """A text field as escaped bytes; surrogate escapes round-trip the client's raw bytes."""
    return escape(value.encode("utf-8", "surrogateescape"))


_KNOWN: dict[str, bytes] = {}
KNOWN_LIMIT = 4096  # remembered values; then the memory starts over


def encode_name(value: str) -> bytes:
    """:func:`encode_text`, remembered: for values that repeat request after request (user
    names, services).  Never for a secret: what it is given stays in memory."""
    known = _KNOWN.get(value)
    if known is None:
        if len(_KNOWN) >= KNOWN_LIMIT:
            _KNOWN.clear()
        known = _KNOWN[value] = encode_text(value)
    return known


def decode_text(value: bytes) -> str:
    """Bytes from the wire as text, keeping invalid UTF-8 as surrogate escapes."""
    return value.decode("utf-8", "surrogateescape")


def b64decode(data: bytes) -> bytes | None:
    """Strict base64 as Dovecot 2.3.9+ decodes it; None when invalid.

    Whitespace is skipped, padding is required, ``=`` may not start a quantum, nothing may follow
    the padding, and the URL-safe alphabet is refused.  The empty string is valid.
    """
    if 32 in data or 9 in data or 13 in data or 10 in data:  # space, TAB, CR, LF
        data = _B64_SPACE.sub(b"", data)
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except binascii.Error:
        return None


def b64encode(data: bytes) -> bytes:
    """Padded base64 without line breaks, as the server always emits it."""
    return base64.b64encode(data)
