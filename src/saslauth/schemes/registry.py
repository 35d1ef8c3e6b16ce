"""The scheme table and Dovecot's rules for reading ``{SCHEME}data``.

* ``password_get_scheme``: a value starting ``$1$<salt>$`` is MD5-CRYPT (cut after the hash,
  ``$1$salt$hash$ignored``); otherwise ``{NAME}`` up to the first ``}``; otherwise there is no
  scheme and the passdb's default scheme applies to the whole value.
* ``password_scheme_lookup``: names are ASCII case-insensitive; the text after the first
  ``.`` must be ``b64``, ``base64`` or ``hex`` (any case) or the scheme is unknown.
* ``password_decode``: a fixed-length digest without a suffix is guessed (see
  :func:`~saslauth.schemes.digests.decode_fixed`); otherwise the scheme's encoding applies.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from saslauth.errors import InvalidHashError, UnknownSchemeError
from saslauth.schemes import argon, digests, otp, pbkdf2, scram, unixcrypt
from saslauth.schemes.digests import GenerateFn, VerifyFn
from saslauth.schemes.encoding import Encoding, decode

_NONE, _B64, _HEX = Encoding.NONE, Encoding.BASE64, Encoding.HEX
_SUFFIXES = {"b64": _B64, "base64": _B64, "hex": _HEX}
_PRINTABLE_NAME = re.compile(r"[A-Za-z0-9._-]{1,40}")


def _always(raw: bytes) -> bool:
    return True


def _never(raw: bytes) -> bool:
    return False


def _md5_is_cheap(raw: bytes) -> bool:
    return not raw.startswith(b"$1$")


@dataclass(frozen=True)
class Scheme:
    """One password scheme.  ``verify=None`` means "generate and compare" (unsalted digests)."""

    name: str
    encoding: Encoding
    raw_len: int  # 0: variable length
    generate: GenerateFn
    verify: VerifyFn | None = None
    is_cheap: Callable[[bytes], bool] = _always


def _table() -> dict[str, Scheme]:
    d = digests
    schemes = [
        Scheme("PLAIN", _NONE, 0, d.plain_generate, d.plain_verify),
        Scheme("CLEAR", _NONE, 0, d.plain_generate, d.plain_verify),
        Scheme("CLEARTEXT", _NONE, 0, d.plain_generate, d.plain_verify),
        Scheme("PLAIN-TRUNC", _NONE, 0, d.plain_trunc_generate, d.plain_trunc_verify),
        Scheme("SHA", _B64, d.SHA1_LEN, d.sha1_generate),
        Scheme("SHA1", _B64, d.SHA1_LEN, d.sha1_generate),
        Scheme("SHA256", _B64, d.SHA256_LEN, d.sha256_generate),
        Scheme("SHA512", _B64, d.SHA512_LEN, d.sha512_generate),
        Scheme("SSHA", _B64, 0, d.ssha_generate, d.ssha_verify),
        Scheme("SSHA256", _B64, 0, d.ssha256_generate, d.ssha256_verify),
        Scheme("SSHA512", _B64, 0, d.ssha512_generate, d.ssha512_verify),
        Scheme("SMD5", _B64, 0, d.smd5_generate, d.smd5_verify),
        Scheme("PLAIN-MD5", _HEX, d.MD5_LEN, d.md5_generate),
        Scheme("LDAP-MD5", _B64, d.MD5_LEN, d.md5_generate),
        Scheme("PLAIN-MD4", _HEX, d.MD4_LEN, d.md4_generate),
        Scheme("DIGEST-MD5", _HEX, d.MD5_LEN, d.digest_md5_generate),
        Scheme("CRAM-MD5", _HEX, 32, d.cram_md5_generate),
        Scheme("HMAC-MD5", _HEX, 32, d.cram_md5_generate),
        Scheme("MD5", _NONE, 0, unixcrypt.md5_crypt_generate, d.md5_verify, _md5_is_cheap),
        Scheme(
            "MD5-CRYPT", _NONE, 0, unixcrypt.md5_crypt_generate, unixcrypt.md5_crypt_verify, _never
        ),
        Scheme("BLF-CRYPT", _NONE, 0, unixcrypt.blf_generate, unixcrypt.blf_verify, _never),
        Scheme("CRYPT", _NONE, 0, unixcrypt.blf_generate, unixcrypt.crypt_verify, _never),
        Scheme("PBKDF2", _NONE, 0, pbkdf2.pbkdf2_generate, pbkdf2.pbkdf2_verify, _never),
        Scheme("SCRAM-SHA-1", _NONE, 0, scram.scram_sha1_generate, scram.scram_sha1_verify, _never),
        Scheme(
            "SCRAM-SHA-256",
            _NONE,
            0,
            scram.scram_sha256_generate,
            scram.scram_sha256_verify,
            _never,
        ),
        Scheme("OTP", _NONE, 0, otp.otp_generate, otp.otp_verify, _never),
        Scheme("ARGON2I", _NONE, 0, argon.argon2i_generate, argon.argon2_verify, _never),
        Scheme("ARGON2ID", _NONE, 0, argon.argon2id_generate, argon.argon2_verify, _never),
    ]
    # Like Dovecot, offer these only when the system crypt(3) passes the self-test.
    libcrypt_generators = {
        "DES-CRYPT": unixcrypt.des_generate,
        "SHA256-CRYPT": unixcrypt.sha256_generate,
        "SHA512-CRYPT": unixcrypt.sha512_generate,
    }
    for name, generate in libcrypt_generators.items():
        if name in unixcrypt.LIBCRYPT_SCHEMES:
            schemes.append(Scheme(name, _NONE, 0, generate, unixcrypt.crypt_verify, _never))
    return {s.name: s for s in schemes}


SCHEMES = _table()


def _unknown(name: str) -> UnknownSchemeError:
    if _PRINTABLE_NAME.fullmatch(name):
        return UnknownSchemeError(f"unknown password scheme {name!r}")
    return UnknownSchemeError("unknown password scheme (name not shown: unusual characters)")


def lookup(name: str) -> tuple[Scheme, Encoding, bool]:
    """(scheme, encoding, encoding given explicitly) for ``NAME[.suffix]``."""
    base, dot, suffix = name.partition(".")
    scheme = SCHEMES.get(base.upper()) if base.isascii() else None
    if scheme is None:
        raise _unknown(name)
    if not dot:
        return scheme, scheme.encoding, False
    encoding = _SUFFIXES.get(suffix.lower()) if suffix.isascii() else None
    if encoding is None:
        raise _unknown(name)
    return scheme, encoding, True


def split_stored(stored: str, default_scheme: str) -> tuple[str, str]:
    """(scheme name, data) of a stored value, as Dovecot's ``password_get_scheme``."""
    if stored.startswith("$1$"):
        salt_end = stored.find("$", 3)
        if salt_end >= 0:
            hash_end = stored.find("$", salt_end + 1)
            return "MD5-CRYPT", stored if hash_end < 0 else stored[:hash_end]
    if stored.startswith("{"):
        end = stored.find("}")
        if end >= 0:
            return stored[1:end], stored[end + 1 :]
    return default_scheme, stored


def decode_raw(scheme: Scheme, encoding: Encoding, explicit: bool, data: bytes) -> bytes:
    """The raw bytes the scheme works on (Dovecot's ``password_decode``)."""
    try:
        if scheme.raw_len and encoding is not Encoding.NONE and not explicit:
            return digests.decode_fixed(data, scheme.raw_len)
        raw = decode(data, encoding)
    except InvalidHashError as exc:
        raise InvalidHashError(f"{scheme.name}: {exc}") from None
    if scheme.raw_len and len(raw) != scheme.raw_len:
        raise InvalidHashError(f"{scheme.name}: the decoded value has the wrong length")
    return raw
