"""PBKDF2: Dovecot's ``$1$<salt>$<rounds>$<hex of PBKDF2-HMAC-SHA1, 20 bytes>``.

The salt is used as the literal bytes written between the ``$`` signs.  Generation: 16 salt
characters of the crypt alphabet, 5000 rounds unless told otherwise.  Dovecot 2.3 treats 0
rounds as "derivation failed" and then compares against an all-zero key, which would accept
*any* password for ``$1$x$0$000...0``; that entry is a mismatch here.
"""

from __future__ import annotations

import hashlib
import hmac

from saslauth.errors import InvalidHashError
from saslauth.fieldvalues import uint32
from saslauth.schemes.encoding import hex_decode, random_salt
from saslauth.schemes.unixcrypt import c_string

KEY_LEN = 20
ROUNDS_DEFAULT = 5000
SALT_LEN = 16


def pbkdf2_verify(password: bytes, raw: bytes, user: str) -> bool:
    raw = c_string(raw)
    if not raw.startswith(b"$1$"):
        raise InvalidHashError("PBKDF2: the value does not start with $1$")
    fields = raw[3:].split(b"$")
    rounds = uint32(fields[1]) if len(fields) == 3 else None  # (str_to_uint's rules)
    if rounds is None:
        raise InvalidHashError("PBKDF2: the value is not $1$salt$rounds$hash")
    salt, _, key_hex = fields
    if len(key_hex) != 2 * KEY_LEN:
        raise InvalidHashError("PBKDF2: the hash is not 160 bits of hex")
    try:
        key = hex_decode(key_hex)
    except InvalidHashError:
        raise InvalidHashError("PBKDF2: the hash is not 160 bits of hex") from None
    if rounds == 0:
        return False
    derived = hashlib.pbkdf2_hmac("sha1", password, salt, rounds, KEY_LEN)
    return hmac.compare_digest(derived, key)


def pbkdf2_generate(password: bytes, user: str, rounds: int | None) -> bytes:
    n = rounds or ROUNDS_DEFAULT
    salt = random_salt(SALT_LEN)
    key = hashlib.pbkdf2_hmac("sha1", password, salt.encode(), n, KEY_LEN)
    return f"$1${salt}${n}${key.hex()}".encode()
