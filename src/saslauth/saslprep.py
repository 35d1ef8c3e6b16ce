"""SASLprep (RFC 4013) on top of the stdlib ``stringprep`` tables (RFC 3454).

Received names and passwords are *queries* in RFC 3454's sense, so unassigned code points are
allowed.  Returns None when the string is prohibited (the login then fails like a bad name).
"""

from __future__ import annotations

import stringprep
import unicodedata

_PROHIBITED = (
    stringprep.in_table_c12,
    stringprep.in_table_c21,
    stringprep.in_table_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
)


def saslprep(text: str) -> str | None:
    mapped = "".join(
        " " if stringprep.in_table_c12(char) else char
        for char in text
        if not stringprep.in_table_b1(char)
    )
    prepared = unicodedata.normalize("NFKC", mapped)
    for char in prepared:
        if any(prohibited(char) for prohibited in _PROHIBITED):
            return None
    if any(stringprep.in_table_d1(char) for char in prepared):
        if any(stringprep.in_table_d2(char) for char in prepared):
            return None
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            return None
    return prepared


def saslprep_bytes(value: bytes) -> bytes | None:
    """SASLprep of UTF-8 bytes; None when not UTF-8 or prohibited."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    prepared = saslprep(text)
    return None if prepared is None else prepared.encode("utf-8")
