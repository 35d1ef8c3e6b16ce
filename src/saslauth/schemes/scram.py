"""SCRAM-SHA-1 and SCRAM-SHA-256 stored keys (RFC 5802): ``iter,salt,StoredKey,ServerKey``.

Parsing follows Dovecot 2.3: exactly four comma-separated fields; the iteration count is
decimal digits within 4096..2**31-1; StoredKey and ServerKey are strict base64 of one digest;
the salt goes through Dovecot's lenient base64 decoder.  Generation: 16-byte salt, 4096
iterations by default.  (``doveadm pw -r`` is ignored for SCRAM in 2.3.19; here ``rounds`` is
honoured, clamped to 4096..2**31-1 as later Dovecot releases do.)
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from saslauth.errors import InvalidHashError
from saslauth.fieldvalues import uint32
from saslauth.schemes.encoding import b64_decode, b64_decode_lenient, b64_encode
from saslauth.schemes.unixcrypt import c_string

ITERATIONS_MIN = 4096
ITERATIONS_MAX = 2**31 - 1
ITERATIONS_DEFAULT = 4096
SALT_LEN = 16


@dataclass(frozen=True)
class ScramCredentials:
    """A parsed SCRAM entry, what the SCRAM mechanism needs from the passdb."""

    iterations: int
    salt: bytes
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)


def parse(hash_name: str, scheme: str, raw: bytes) -> ScramCredentials:
    """Parse a stored SCRAM value; InvalidHashError (naming only ``scheme``) if malformed."""
    fields = c_string(raw).split(b",")
    if len(fields) != 4:
        raise InvalidHashError(f"{scheme}: the value is not iter,salt,StoredKey,ServerKey")
    iterations = uint32(fields[0])  # (str_to_uint's rules)
    if iterations is None or not ITERATIONS_MIN <= iterations <= ITERATIONS_MAX:
        raise InvalidHashError(f"{scheme}: invalid iteration count")
    size = hashlib.new(hash_name).digest_size
    keys = []
    for what, text in (("StoredKey", fields[2]), ("ServerKey", fields[3])):
        try:
            key = b64_decode(text)
        except InvalidHashError:
            key = b""
        if len(key) != size:
            raise InvalidHashError(f"{scheme}: invalid {what}")
        keys.append(key)
    return ScramCredentials(iterations, b64_decode_lenient(fields[1]), keys[0], keys[1])


def _keys(hash_name: str, password: bytes, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac(hash_name, password, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hash_name).digest()
    server_key = hmac.new(salted, b"Server Key", hash_name).digest()
    return hashlib.new(hash_name, client_key).digest(), server_key


def _verifier(hash_name: str, scheme: str) -> Callable[[bytes, bytes, str], bool]:
    def verify(password: bytes, raw: bytes, user: str) -> bool:
        creds = parse(hash_name, scheme, raw)
        stored_key, _ = _keys(hash_name, password, creds.salt, creds.iterations)
        return hmac.compare_digest(stored_key, creds.stored_key)

    return verify


def _generator(hash_name: str) -> Callable[[bytes, str, int | None], bytes]:
    def generate(password: bytes, user: str, rounds: int | None) -> bytes:
        n = min(max(rounds, ITERATIONS_MIN), ITERATIONS_MAX) if rounds else ITERATIONS_DEFAULT
        salt = os.urandom(SALT_LEN)
        stored_key, server_key = _keys(hash_name, password, salt, n)
        return f"{n},{b64_encode(salt)},{b64_encode(stored_key)},{b64_encode(server_key)}".encode()

    return generate


scram_sha1_verify = _verifier("sha1", "SCRAM-SHA-1")
scram_sha256_verify = _verifier("sha256", "SCRAM-SHA-256")
scram_sha1_generate = _generator("sha1")
scram_sha256_generate = _generator("sha256")
