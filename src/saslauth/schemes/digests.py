"""Plain and salted digests: PLAIN*, SHA*, SSHA*, SMD5, *-MD5, PLAIN-MD4, DIGEST-MD5, CRAM-MD5.

Each scheme here is a ``generate`` that returns raw bytes, plus a ``verify`` only where a
plain "generate and compare" is not what Dovecot does (salted digests, PLAIN-TRUNC, MD5).
All comparisons go through :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable

from saslauth.errors import InvalidHashError
from saslauth.schemes.cram import cram_md5_context
from saslauth.schemes.encoding import b64_decode, hex_decode, to_bytes
from saslauth.schemes.md4 import md4
from saslauth.schemes.unixcrypt import md5_crypt_verify

SALT_LEN = 4  # Dovecot's SSHA/SSHA256/SSHA512/SMD5 generation
MD5_LEN, SHA1_LEN, SHA256_LEN, SHA512_LEN, MD4_LEN = 16, 20, 32, 64, 16

GenerateFn = Callable[[bytes, str, "int | None"], bytes]
VerifyFn = Callable[[bytes, bytes, str], bool]


def decode_fixed(data: bytes, raw_len: int) -> bytes:
    """Dovecot's guess for a fixed-length digest without an encoding suffix.

    Hex when the text is exactly twice the digest length (falling back to base64 when it is
    not valid hex), base64 otherwise; then the length must be right.
    """
    raw: bytes | None = None
    if len(data) == 2 * raw_len:
        try:
            raw = hex_decode(data)
        except InvalidHashError:
            raw = None
    if raw is None:
        raw = b64_decode(data)
    if len(raw) != raw_len:
        raise InvalidHashError("the decoded digest has the wrong length")
    return raw


def plain_generate(password: bytes, user: str, rounds: int | None) -> bytes:
    return password


def plain_verify(password: bytes, raw: bytes, user: str) -> bool:
    return hmac.compare_digest(password, raw)


def plain_trunc_generate(password: bytes, user: str, rounds: int | None) -> bytes:
    # doveadm writes the bare password, which its own PLAIN-TRUNC verify then refuses
    # ("missing length: prefix"); write the form that verifies.
    return b"%d-%s" % (len(password), password)


def plain_trunc_verify(password: bytes, raw: bytes, user: str) -> bool:
    """``<length>-<password>``: a stored password cut to ``length`` matches longer input."""
    digits = 0
    while digits < len(raw) and raw[digits : digits + 1].isdigit():
        digits += 1
    if raw[digits : digits + 1] != b"-":
        raise InvalidHashError("PLAIN-TRUNC: missing length: prefix")
    length = raw[:digits].lstrip(b"0")
    stored = raw[digits + 1 :]
    if not stored:
        # Dovecot lets "0-" or "-" (a password cut to nothing) match *any* password; not here.
        return False
    # The length is compared as text: a huge one cannot match and must not reach int().
    if length == str(len(stored)).encode().lstrip(b"0") and len(password) >= len(stored):
        return hmac.compare_digest(stored, password[: len(stored)])
    return hmac.compare_digest(stored, password)


def _digest(name: str) -> GenerateFn:
    def generate(password: bytes, user: str, rounds: int | None) -> bytes:
        return hashlib.new(name, password).digest()

    return generate


sha1_generate = _digest("sha1")
sha256_generate = _digest("sha256")
sha512_generate = _digest("sha512")
md5_generate = _digest("md5")


def md4_generate(password: bytes, user: str, rounds: int | None) -> bytes:
    return md4(password)


def _salted(name: str, digest_len: int, scheme: str) -> tuple[GenerateFn, VerifyFn]:
    def generate(password: bytes, user: str, rounds: int | None) -> bytes:
        salt = os.urandom(SALT_LEN)
        return hashlib.new(name, password + salt).digest() + salt

    def verify(password: bytes, raw: bytes, user: str) -> bool:
        if len(raw) <= digest_len:
            raise InvalidHashError(f"{scheme}: the value is too short")
        digest = hashlib.new(name, password + raw[digest_len:]).digest()
        return hmac.compare_digest(digest, raw[:digest_len])

    return generate, verify


ssha_generate, ssha_verify = _salted("sha1", SHA1_LEN, "SSHA")
ssha256_generate, ssha256_verify = _salted("sha256", SHA256_LEN, "SSHA256")
ssha512_generate, ssha512_verify = _salted("sha512", SHA512_LEN, "SSHA512")
smd5_generate, smd5_verify = _salted("md5", MD5_LEN, "SMD5")


def md5_verify(password: bytes, raw: bytes, user: str) -> bool:
    """MD5: ``$1$...`` is MD5-CRYPT, anything else must be a PLAIN-MD5 digest (hex or base64)."""
    if raw.startswith(b"$1$"):
        return md5_crypt_verify(password, raw, user)
    try:
        digest = decode_fixed(raw, MD5_LEN)
    except InvalidHashError:
        raise InvalidHashError("MD5: the value is neither MD5-CRYPT nor PLAIN-MD5") from None
    return hmac.compare_digest(hashlib.md5(password).digest(), digest)  # noqa: S324


def digest_md5_generate(password: bytes, user: str, rounds: int | None) -> bytes:
    """MD5(user:realm:password), splitting ``user@realm`` at the last ``@`` (no ``@``: no realm)."""
    name, at, realm = user.rpartition("@")
    if not at:
        name, realm = user, ""
    return hashlib.md5(b"%s:%s:%s" % (to_bytes(name), to_bytes(realm), password)).digest()  # noqa: S324


def cram_md5_generate(password: bytes, user: str, rounds: int | None) -> bytes:
    return cram_md5_context(password)
