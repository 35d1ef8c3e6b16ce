"""Password schemes, verified and generated exactly as Dovecot 2.3 does.

Stored values are ``{SCHEME}data`` or bare data (then the passdb's default scheme applies).
Every scheme that ``doveadm pw -l`` lists in Dovecot 2.3.19 is here:

===================  =========================================================================
PLAIN, CLEAR,        the password itself; PLAIN-TRUNC is ``<len>-<password>``
CLEARTEXT,
PLAIN-TRUNC
SHA, SHA1, SHA256,   unsalted digests (base64; hex is recognised by its length)
SHA512
SSHA, SSHA256,       ``digest || salt``, any salt length > 0 (base64)
SSHA512, SMD5
PLAIN-MD5, LDAP-MD5  MD5 (hex / base64); PLAIN-MD4: MD4 (hex, pure Python)
DIGEST-MD5           MD5(user:realm:password) with ``user`` split at its last ``@``
CRAM-MD5, HMAC-MD5   the HMAC-MD5 midstates (hex)
MD5                  ``$1$`` is MD5-CRYPT, anything else PLAIN-MD5
CRYPT, DES-CRYPT,    crypt(3) through libcrypt (any crypt string, yescrypt too);
SHA256-CRYPT,        ``$2?$`` goes to BLF-CRYPT; MD5-CRYPT is Dovecot's md5crypt
SHA512-CRYPT,
MD5-CRYPT
BLF-CRYPT            bcrypt, password cut to 72 bytes
ARGON2I, ARGON2ID    libsodium strings, verified with argon2-cffi (concurrency capped)
PBKDF2               ``$1$salt$rounds$hex`` (PBKDF2-HMAC-SHA1)
SCRAM-SHA-1,         ``iter,salt,StoredKey,ServerKey``
SCRAM-SHA-256
OTP                  RFC 2289 ``algo seq seed hash``
===================  =========================================================================

Names are case-insensitive and take a ``.B64``/``.BASE64``/``.HEX`` suffix.  Errors never
carry the stored value: :class:`~saslauth.errors.UnknownSchemeError` names only the scheme,
:class:`~saslauth.errors.InvalidHashError` only what is wrong.  A wrong password is ``False``.
A password containing a NUL byte never matches (Dovecot's passwords are C strings).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from saslauth.errors import SchemeError
from saslauth.schemes.argon import set_argon2_limit
from saslauth.schemes.digests import plain_verify
from saslauth.schemes.encoding import encode, to_bytes
from saslauth.schemes.registry import SCHEMES, decode_raw, lookup, split_stored

__all__ = [
    "DEFAULT_GENERATE_SCHEME",
    "generate",
    "is_cheap",
    "known_schemes",
    "plain_checker",
    "scheme_of",
    "set_argon2_limit",
    "verify",
]

DEFAULT_GENERATE_SCHEME = "SHA512-CRYPT"


def verify(password: bytes, stored: str, *, user: str = "", default_scheme: str = "CRYPT") -> bool:
    """True if ``password`` matches ``stored``; False on a mismatch.

    ``user`` matters only for DIGEST-MD5 (``user@realm``).  Raises UnknownSchemeError for an
    unknown scheme and InvalidHashError for a value the scheme cannot read.  CPU-heavy schemes
    (see :func:`is_cheap`) release the GIL, so run them in a thread pool.
    """
    name, data = split_stored(stored, default_scheme)
    scheme, encoding, explicit = lookup(name)
    raw = decode_raw(scheme, encoding, explicit, to_bytes(data))
    if b"\0" in password:
        return False
    if scheme.verify is not None:
        return scheme.verify(password, raw, user)
    return hmac.compare_digest(scheme.generate(password, user, None), raw)


def plain_checker(stored: str, *, default_scheme: str = "CRYPT") -> Callable[[bytes], bool] | None:
    """A ready ``verify(password, stored)`` for a PLAIN/CLEAR/CLEARTEXT value, else None.

    The verifier checks the same stored value again and again; for PLAIN the scheme lookup and
    decoding are nearly all of verify()'s cost, so they are done once here.  None for every
    other scheme and for a value verify() would refuse (then verify() raises as usual).  The
    checker answers exactly as verify() does: NUL never matches, compare_digest otherwise.
    """
    name, data = split_stored(stored, default_scheme)
    try:
        scheme, encoding, explicit = lookup(name)
        if scheme.verify is not plain_verify:
            return None
        raw = decode_raw(scheme, encoding, explicit, to_bytes(data))
    except SchemeError:
        return None

    def check(password: bytes) -> bool:
        return 0 not in password and hmac.compare_digest(password, raw)  # (memchr for NUL)

    return check


def generate(scheme: str, password: bytes, *, user: str = "", rounds: int | None = None) -> str:
    """``{SCHEME}...`` for ``password``, with ``doveadm pw -s SCHEME [-r ROUNDS]``'s defaults.

    ``rounds`` (0 or None: the scheme's default) is the cost for BLF-CRYPT/CRYPT, the rounds
    for SHA*-CRYPT and PBKDF2, the iterations for SCRAM and the opslimit for argon2; other
    schemes ignore it.  Raises UnknownSchemeError, or ValueError for a password containing
    NUL, a DIGEST-MD5 request without ``user``, negative rounds or ARGON2I below 3 rounds.
    """
    found, encoding, _ = lookup(scheme)
    if b"\0" in password:
        raise ValueError("a password cannot contain a NUL byte")
    if rounds is not None and rounds < 0:
        raise ValueError("rounds cannot be negative")
    if found.name == "DIGEST-MD5" and not user:
        raise ValueError("DIGEST-MD5 needs the user name (user@realm)")
    raw = found.generate(password, user, rounds)
    return "{" + scheme.upper() + "}" + encode(raw, encoding)


def is_cheap(stored: str, *, default_scheme: str = "CRYPT") -> bool:
    """True when :func:`verify` takes only microseconds, so it may run on the event loop.

    False for crypt(3), bcrypt, argon2, PBKDF2, SCRAM and OTP.  Unknown schemes count as
    cheap: verify() fails on them at once.  Never raises.
    """
    name, data = split_stored(stored, default_scheme)
    try:
        scheme, _, _ = lookup(name)
    except SchemeError:
        return True
    return scheme.is_cheap(to_bytes(data))


def scheme_of(stored: str, *, default_scheme: str = "CRYPT") -> str:
    """The canonical upper-case name of the scheme of ``stored``, without encoding suffix.

    Raises UnknownSchemeError when the scheme is not known.
    """
    name, _ = split_stored(stored, default_scheme)
    scheme, _, _ = lookup(name)
    return scheme.name


def known_schemes() -> list[str]:
    """The canonical names of every scheme this module verifies and generates, sorted."""
    return sorted(SCHEMES)
