"""Dovecot's text encodings of stored passwords: strict hex, its base64 dialect, salts.

Facts mirrored from Dovecot 2.3 (checked against ``doveadm pw -t``):

* hex: an even number of ``[0-9a-fA-F]``, nothing else (no blanks);
* base64: the standard alphabet; space, tab, CR and LF are skipped anywhere; the padding is
  required; after the padding only blanks may follow; non-zero trailing bits are accepted;
* the lenient decoder (``t_base64_decode_str``, used for the SCRAM salt) keeps whatever it
  decoded before the first bad character, including a last, incomplete group.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
import secrets

from saslauth.errors import InvalidHashError

#: Dovecot's ``salt_chars`` (the crypt(3) alphabet).
SALT_CHARS = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

_HEX = re.compile(rb"(?:[0-9a-fA-F]{2})*")
_B64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = {c: i for i, c in enumerate(_B64_ALPHABET)}


class Encoding(enum.Enum):
    """How a scheme's raw bytes are written in the passdb."""

    NONE = "none"
    BASE64 = "base64"
    HEX = "hex"


def to_bytes(text: str) -> bytes:
    """UTF-8 bytes of ``text``; undecodable bytes smuggled in as surrogates come back out."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def hex_decode(data: bytes) -> bytes:
    """Strict hex (Dovecot's ``hex_to_binary``); InvalidHashError otherwise."""
    if _HEX.fullmatch(data) is None:
        raise InvalidHashError("input is not valid hex-encoded data")
    return bytes.fromhex(data.decode("ascii"))


def b64_decode(data: bytes) -> bytes:
    """Dovecot's base64 decoder (blanks skipped, padding required); InvalidHashError otherwise."""
    compact = data.translate(None, b" \t\r\n")
    if len(compact) % 4 or _B64.fullmatch(compact) is None:
        raise InvalidHashError("input is not valid base64-encoded data")
    try:
        return binascii.a2b_base64(compact)
    except binascii.Error:  # pragma: no cover - excluded by the checks above
        raise InvalidHashError("input is not valid base64-encoded data") from None


def b64_decode_lenient(data: bytes) -> bytes:
    """What Dovecot's ``t_base64_decode_str`` yields: everything decoded before the first error."""
    out = bytearray()
    acc = bits = 0
    for c in data:
        if c in b" \t\r\n":
            continue
        value = _B64_VALUE.get(c)
        if value is None:
            break
        acc = ((acc << 6) | value) & 0xFFFFFF
        bits += 6
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    return bytes(out)


def b64_encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def decode(data: bytes, encoding: Encoding) -> bytes:
    if encoding is Encoding.HEX:
        return hex_decode(data)
    if encoding is Encoding.BASE64:
        return b64_decode(data)
    return data


def encode(raw: bytes, encoding: Encoding) -> str:
    if encoding is Encoding.HEX:
        return raw.hex()
    if encoding is Encoding.BASE64:
        return b64_encode(raw)
    return raw.decode("utf-8", "surrogateescape")


def random_salt(length: int) -> str:
    """``length`` random characters of :data:`SALT_CHARS` (Dovecot's ``password_generate_salt``)."""
    return "".join(secrets.choice(SALT_CHARS) for _ in range(length))
