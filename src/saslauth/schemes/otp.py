"""OTP (RFC 2289 one-time passwords) as a stored scheme: ``<algo> <seq> <seed> <hex hash>``.

Verifying a *plaintext* password against an OTP entry, as Dovecot does, means recomputing
the entry: hash ``seed + password`` with the algorithm (md4, md5 or sha1, folded to 64 bits)
and apply it ``seq`` more times, then compare the printed entry, ignoring case, with the
stored one.  Parsing copies Dovecot's ``otp_parse_dbentry``: the algorithm name is exact
lower case; a space or tab; a decimal sequence; a space or tab; at most 16 alphanumeric seed
characters (lower-cased); one space; 16 hex digits (blanks between them are skipped, and
anything after them is left to the final comparison).  Generation: sha1, sequence 1024 and a
seed of 16 random hex digits, as ``doveadm pw -s OTP``.

Two deliberate limits where Dovecot would spin: a negative sequence (an unsigned loop of
about 4 billion steps in Dovecot) is a mismatch without computing anything, and a sequence
above :data:`SEQUENCE_MAX` is an invalid entry.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable

from saslauth.errors import InvalidHashError
from saslauth.fieldvalues import decimal
from saslauth.schemes.md4 import md4
from saslauth.schemes.unixcrypt import c_string

SEQUENCE_DEFAULT = 1024
SEQUENCE_MAX = 100_000
SEED_MAX = 16
_HASH_HEX = 16
_BLANKS = b" \t"
_HEXDIGITS = frozenset(b"0123456789abcdefABCDEF")


def _fold_md(digest: bytes) -> bytes:
    return bytes(digest[i] ^ digest[i + 8] for i in range(8))


def _fold_sha1(digest: bytes) -> bytes:
    low = bytes(digest[i] ^ digest[i + 8] ^ digest[i + 16] for i in range(4))
    high = bytes(digest[i + 4] ^ digest[i + 12] for i in range(4))
    return low[::-1] + high[::-1]  # RFC 2289's byte order for SHA-1


_ALGORITHMS: dict[bytes, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
    b"md4": (md4, _fold_md),
    b"md5": (lambda d: hashlib.md5(d).digest(), _fold_md),  # noqa: S324
    b"sha1": (lambda d: hashlib.sha1(d).digest(), _fold_sha1),  # noqa: S324
}


def otp_hash(algorithm: bytes, seed: bytes, password: bytes, sequence: int) -> bytes:
    """The 8-byte RFC 2289 OTP of ``password`` at ``sequence``."""
    digest, fold = _ALGORITHMS[algorithm]
    result = fold(digest(seed + password))
    for _ in range(sequence):
        result = fold(digest(result))
    return result


def _parse(raw: bytes) -> tuple[bytes, int, bytes]:
    """(algorithm, sequence, seed) of a stored entry; InvalidHashError if Dovecot rejects it."""
    invalid = InvalidHashError("OTP: the value is not '<algo> <seq> <seed> <hash>'")
    pos = 0
    while pos < len(raw) and raw[pos] not in _BLANKS:
        pos += 1
    algorithm = raw[:pos]
    if pos == len(raw) or algorithm not in _ALGORITHMS:
        raise invalid
    pos += 1
    start = pos
    if raw[pos : pos + 1] == b"-":
        pos += 1
    while pos < len(raw) and raw[pos : pos + 1].isdigit():
        pos += 1
    digits = raw[start:pos]
    if digits in (b"", b"-") or pos == len(raw) or raw[pos] not in _BLANKS:
        raise invalid
    magnitude = decimal(digits.removeprefix(b"-"), 10)
    if magnitude is None:
        raise invalid
    sequence = -magnitude if digits.startswith(b"-") else magnitude
    if not -(2**31) <= sequence < 2**31:
        raise invalid
    if sequence > SEQUENCE_MAX:
        raise InvalidHashError("OTP: sequence number out of range")
    pos += 1
    start = pos
    while pos < len(raw) and pos - start < SEED_MAX and raw[pos : pos + 1].isalnum():
        pos += 1
    seed = raw[start:pos].lower()
    if raw[pos : pos + 1] != b" ":
        raise invalid
    pos += 1
    count = 0
    while pos < len(raw) and count < _HASH_HEX:
        if raw[pos] in _HEXDIGITS:
            count += 1
        elif raw[pos] not in _BLANKS:
            raise invalid
        pos += 1
    if count < _HASH_HEX:
        raise invalid
    return algorithm, sequence, seed


def _entry(algorithm: bytes, sequence: int, seed: bytes, password: bytes) -> bytes:
    digest = otp_hash(algorithm, seed, password, sequence).hex().encode()
    return b"%s %d %s %s" % (algorithm, sequence, seed, digest)


def otp_verify(password: bytes, raw: bytes, user: str) -> bool:
    raw = c_string(raw)
    algorithm, sequence, seed = _parse(raw)
    if sequence < 0:
        return False  # Dovecot loops ~2**32 times and then (practically always) mismatches
    return hmac.compare_digest(_entry(algorithm, sequence, seed, password), raw.lower())


def otp_generate(password: bytes, user: str, rounds: int | None) -> bytes:
    return _entry(b"sha1", SEQUENCE_DEFAULT, os.urandom(SEED_MAX // 2).hex().encode(), password)
