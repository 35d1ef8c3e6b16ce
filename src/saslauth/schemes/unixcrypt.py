"""The crypt(3) family: CRYPT, DES-CRYPT, MD5-CRYPT, SHA256-CRYPT, SHA512-CRYPT, BLF-CRYPT.

As in Dovecot 2.3.19:

* CRYPT, DES-CRYPT, SHA256-CRYPT and SHA512-CRYPT all verify *any* crypt(3) string with the
  system libcrypt (DES, ``$1$``, ``$5$``, ``$6$``, yescrypt ``$y$``/``$gy$``, ...), except that a
  value shaped ``$2?$...`` goes to BLF-CRYPT;
* BLF-CRYPT uses Openwall's crypt_blowfish (bundled in Dovecot).  libxcrypt's bcrypt *is*
  crypt_blowfish, so libcrypt gives bit-identical results, including ``$2x$`` and the ``$2a$``
  safety measure; pyca ``bcrypt`` is the fallback when libcrypt has no bcrypt.  Passwords are
  cut to 72 bytes first (crypt_blowfish ignores the rest; pyca bcrypt 5 would raise);
* MD5-CRYPT is Dovecot's own md5crypt, which takes any salt bytes; libcrypt only takes the
  crypt alphabet, so other salts go to a pure-Python md5crypt;
* CRYPT *generates* bcrypt ``$2y$`` (cost 5), like BLF-CRYPT; SHA-crypt omits ``rounds=``
  at the default 5000 and clamps to 1000..999999999.
"""

from __future__ import annotations

import hashlib
import hmac

import bcrypt

from saslauth.errors import InvalidHashError
from saslauth.schemes import libcrypt
from saslauth.schemes.encoding import SALT_CHARS, random_salt

BLF_PASSWORD_MAX = 72
BLF_ROUNDS_DEFAULT, BLF_ROUNDS_MIN, BLF_ROUNDS_MAX = 5, 4, 31
_BLF_SETTING_LEN = 7 + 22 + 1  # Dovecot's CRYPT_BLF_PREFIX_LEN
SHA2_ROUNDS_DEFAULT, SHA2_ROUNDS_MIN, SHA2_ROUNDS_MAX = 5000, 1000, 999_999_999
SHA2_SALT_LEN = 16
MD5_SALT_LEN = 8

# Dovecot's self-test samples: a scheme is registered only if the system crypt passes.
_SAMPLE_KEY = b"08/15!test~4711"
_SAMPLES = {
    "DES-CRYPT": (b"JB", b"JBOZ0DgmtucwE"),
    "SHA256-CRYPT": (
        b"$5$rounds=1000$0123456789abcdef",
        b"$5$rounds=1000$0123456789abcdef$K/DksR0DT01hGc8g/kt9McEgrbFMKi9qrb1jehe7hn4",
    ),
    "SHA512-CRYPT": (
        b"$6$rounds=1000$0123456789abcdef",
        b"$6$rounds=1000$0123456789abcdef$ZIAd5WqfyLkpvsVCVUU1GrvqaZTqvhJoouxdSqJO71l9Ld3tVrfO"
        b"atEjarhghvEYADkq//LpDnTeO90tcbtHR1",
    ),
}
_BLF_SAMPLE = (
    b"$2a$04$0123456789abcdefABCDEF",
    b"$2a$04$0123456789abcdefABCDE.N.drYX5yIAL1LkTaaZotW3yI0hQhZru",
)

LIBCRYPT_SCHEMES = frozenset(
    name
    for name, (setting, want) in _SAMPLES.items()
    if libcrypt.supports(setting, _SAMPLE_KEY, want)
)
_LIBCRYPT_BCRYPT = libcrypt.supports(_BLF_SAMPLE[0], _SAMPLE_KEY, _BLF_SAMPLE[1])
_CRYPT_ALPHABET = frozenset(SALT_CHARS.encode())


def c_string(raw: bytes) -> bytes:
    """What a C string holding ``raw`` contains (Dovecot's ``t_strndup``): up to the first NUL."""
    nul = raw.find(b"\0")
    return raw if nul < 0 else raw[:nul]


def _clamp(rounds: int | None, default: int, low: int, high: int) -> int:
    if not rounds:
        return default
    return min(max(rounds, low), high)


# --- BLF-CRYPT -------------------------------------------------------------------------------


def _bcrypt(password: bytes, setting: bytes) -> bytes | None:
    password = password[:BLF_PASSWORD_MAX]
    if _LIBCRYPT_BCRYPT:
        return libcrypt.crypt(password, setting)
    try:
        return bcrypt.hashpw(password, setting)
    except ValueError:
        return None


def blf_verify(password: bytes, raw: bytes, user: str) -> bool:
    raw = c_string(raw)
    if not raw:
        return False
    if (
        len(raw) < _BLF_SETTING_LEN
        or raw[:2] != b"$2"
        or not 0x61 <= raw[2] <= 0x7A  # a..z
        or raw[3:4] != b"$"
    ):
        raise InvalidHashError("BLF-CRYPT: the value is not a bcrypt hash")
    crypted = _bcrypt(password, raw[:_BLF_SETTING_LEN])
    if crypted is None:
        raise InvalidHashError("BLF-CRYPT: invalid bcrypt cost or salt")
    return hmac.compare_digest(crypted, raw)


def blf_generate(password: bytes, user: str, rounds: int | None) -> bytes:
    cost = _clamp(rounds, BLF_ROUNDS_DEFAULT, BLF_ROUNDS_MIN, BLF_ROUNDS_MAX)
    setting = b"$2y$" + bcrypt.gensalt(cost, b"2b")[4:]
    crypted = _bcrypt(password, setting)
    if crypted is None:  # pragma: no cover - only with a broken bcrypt
        raise RuntimeError("bcrypt failed")
    return crypted


# --- CRYPT, DES-CRYPT, SHA256-CRYPT, SHA512-CRYPT --------------------------------------------


def crypt_verify(password: bytes, raw: bytes, user: str) -> bool:
    raw = c_string(raw)
    if len(raw) > 4 and raw[:2] == b"$2" and raw[3:4] == b"$":
        return blf_verify(password, raw, user)
    if not raw:
        return False  # crypt() with an empty setting would "match"
    if not libcrypt.available():
        raise InvalidHashError("crypt(3) is not available on this system")
    crypted = libcrypt.crypt(password, raw)
    return crypted is not None and hmac.compare_digest(crypted, raw)


def _libcrypt_generate(password: bytes, setting: bytes) -> bytes:
    crypted = libcrypt.crypt(password, setting)
    if crypted is None:  # pragma: no cover - only with a broken libcrypt
        raise RuntimeError("crypt(3) failed")
    return crypted


def des_generate(password: bytes, user: str, rounds: int | None) -> bytes:
    return _libcrypt_generate(password, random_salt(2).encode())


def _sha2_generate(magic: str, password: bytes, rounds: int | None) -> bytes:
    n = _clamp(rounds, SHA2_ROUNDS_DEFAULT, SHA2_ROUNDS_MIN, SHA2_ROUNDS_MAX)
    salt = random_salt(SHA2_SALT_LEN)
    setting = f"${magic}${salt}" if n == SHA2_ROUNDS_DEFAULT else f"${magic}$rounds={n}${salt}"
    return _libcrypt_generate(password, setting.encode())


def sha256_generate(password: bytes, user: str, rounds: int | None) -> bytes:
    return _sha2_generate("5", password, rounds)


def sha512_generate(password: bytes, user: str, rounds: int | None) -> bytes:
    return _sha2_generate("6", password, rounds)


# --- MD5-CRYPT -------------------------------------------------------------------------------

_ITOA64 = SALT_CHARS.encode()


def _to64(value: int, n: int) -> bytes:
    out = bytearray()
    for _ in range(n):
        out.append(_ITOA64[value & 0x3F])
        value >>= 6
    return bytes(out)


def _md5_crypt_py(password: bytes, salt: bytes) -> bytes:
    """Poul-Henning Kamp's md5crypt, as Dovecot's ``password_generate_md5_crypt``."""
    md5 = hashlib.md5
    ctx = md5(password + b"$1$" + salt)
    alt = md5(password + salt + password).digest()
    for left in range(len(password), 0, -16):
        ctx.update(alt[: min(16, left)])
    i = len(password)
    while i:
        ctx.update(b"\0" if i & 1 else password[:1])
        i >>= 1
    final = ctx.digest()
    for i in range(1000):
        step = md5(password if i & 1 else final)
        if i % 3:
            step.update(salt)
        if i % 7:
            step.update(password)
        step.update(final if i & 1 else password)
        final = step.digest()
    f = final
    encoded = b"".join(
        _to64((f[a] << 16) | (f[b] << 8) | f[c], 4)
        for a, b, c in ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5))
    )
    return b"$1$" + salt + b"$" + encoded + _to64(f[11], 2)


# libcrypt's md5crypt is faster and releases the GIL; use it when it agrees with ours.
_LIBCRYPT_MD5 = libcrypt.supports(
    b"$1$saltsalt$", _SAMPLE_KEY, _md5_crypt_py(_SAMPLE_KEY, b"saltsalt")
)


def md5_crypt(password: bytes, setting: bytes) -> bytes:
    """``$1$<salt>$<hash>`` for ``setting`` (``[$1$]<salt>[$...]``; salt: 8 bytes at most)."""
    rest = setting[3:] if setting.startswith(b"$1$") else setting
    salt = rest.split(b"$", 1)[0][:MD5_SALT_LEN]
    if _LIBCRYPT_MD5 and _CRYPT_ALPHABET.issuperset(salt):
        crypted = libcrypt.crypt(password, b"$1$" + salt + b"$")
        if crypted is not None:
            return crypted
    return _md5_crypt_py(password, salt)


def md5_crypt_verify(password: bytes, raw: bytes, user: str) -> bool:
    raw = c_string(raw)
    if not raw.startswith(b"$1$"):
        return False  # Dovecot's result always starts with $1$, so it cannot match
    return hmac.compare_digest(md5_crypt(password, raw), raw)


def md5_crypt_generate(password: bytes, user: str, rounds: int | None) -> bytes:
    return md5_crypt(password, random_salt(MD5_SALT_LEN).encode())
