"""Username normalisation with Dovecot 2.3's defaults (``auth_request_fix_username``).

Order, as in Dovecot: append ``@default_domain`` when the name has no ``@``; check every
character against ``allowed_chars``; lower-case; refuse the empty name.  Before the character
check (and before any backend sees the name), limits Dovecot does not have: valid UTF-8 (bytes
that are not arrive as surrogate escapes from :func:`saslauth.wire.decode_text`), optionally
SASLprep (RFC 4013, also applied to passwords), then at most ``max_length`` characters (RFC
5321 allows 254 in a path).  A refused name is
reported with ``user=`` and ``original_user=`` both set to the name as received (observed:
``FAIL\\t1\\tuser=alice+tag\\toriginal_user=alice+tag``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from saslauth.saslprep import saslprep, saslprep_bytes
from saslauth.values import value

# Dovecot's auth_username_chars default (the digits really are listed with 0 twice).
DEFAULT_ALLOWED_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567890.-_@"
DEFAULT_MAX_LENGTH = 255
MEMO_LIMIT = 4096  # names whose Identity a policy remembers; then the memory starts over


_SURROGATE_ESCAPE = re.compile(r"[\udc80-\udcff]")  # an invalid byte, from decode_text()


def _valid_utf8(text: str) -> bool:
    return text.isascii() or _SURROGATE_ESCAPE.search(text) is None


@value
class Identity:
    """Who the client says it is: ``user`` normalised, ``original`` as sent."""

    user: str
    original: str
    valid: bool = True
    # ``original_user=`` when it differs from ``user`` (or the name was refused): worked out
    # once, as identities are remembered per name, and read on the per-request path.
    reply_fields: tuple[tuple[str, str | None], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        renamed = not self.valid or self.original != self.user
        reply = (("original_user", self.original),) if renamed else ()
        object.__setattr__(self, "reply_fields", reply)  # (frozen to the type checker)


@dataclass(frozen=True, slots=True)
class UsernamePolicy:
    lowercase: bool = True
    allowed_chars: frozenset[str] = field(default=frozenset(DEFAULT_ALLOWED_CHARS))
    default_domain: str = ""
    max_length: int = DEFAULT_MAX_LENGTH
    saslprep: bool = False
    utf8_passwords: bool = True
    # identify()'s answers by name: the policy is frozen and an Identity immutable, so a name
    # always gets the same one; bounded (MEMO_LIMIT names, then it starts over).
    _known: dict[str, Identity] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )


    def identify(self, name: str) -> Identity:
        """Who ``name`` is under this policy (remembered: logins repeat a few names)."""
        known = self._known.get(name)
        if known is None:
            if len(self._known) >= MEMO_LIMIT:
                self._known.clear()
            known = self._known[name] = self._identify(name)
        return known

    def _identify(self, name: str) -> Identity:
        user = name
        if self.default_domain and "@" not in user:
            user = f"{user}@{self.default_domain}"
        if not _valid_utf8(user):
            return Identity(name, name, valid=False)
        if self.saslprep:
            prepared = saslprep(user)
            if prepared is None:
                return Identity(name, name, valid=False)
            user = prepared
        if len(user) > self.max_length:
            return Identity(name, name, valid=False)
        if not user or not self.allowed_chars.issuperset(user):
            return Identity(name, name, valid=False)
        if self.lowercase:
            user = user.lower()
        return Identity(user, name)

    def prepare_password(self, password: bytes) -> bytes | None:
        """The password as the passdb should see it; None if it is refused before any passdb.

        RFC 4616 and the LOGIN draft carry UTF-8: a password that is not (and, with SASLprep
        on, one SASLprep prohibits) fails like a wrong one.  ``utf8_passwords: false`` lets
        legacy 8-bit passwords through as Dovecot does.
        """
        if self.saslprep:
            return saslprep_bytes(password)
        if self.utf8_passwords:
            try:
                password.decode("utf-8")
            except UnicodeDecodeError:
                return None
        return password
