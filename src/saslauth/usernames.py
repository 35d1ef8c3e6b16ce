"""Username normalisation with Dovecot 2.3's defaults (``auth_request_fix_username``).

Order, as in Dovecot: append ``@default_domain`` when the name has no ``@``; check every
character against ``allowed_chars``; lower-case; refuse the empty name.  Before the character
check (and before any backend sees the name), two limits Dovecot does not have: at most
``max_length`` characters (RFC 5321 allows 254 in a path), and valid UTF-8 (bytes that are not
arrive as surrogate escapes from :func:`saslauth.wire.decode_text`).  A refused name is
reported with ``user=`` and ``original_user=`` both set to the name as received (observed:
``FAIL\\t1\\tuser=alice+tag\\toriginal_user=alice+tag``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Dovecot's auth_username_chars default (the digits really are listed with 0 twice).
DEFAULT_ALLOWED_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567890.-_@"
DEFAULT_MAX_LENGTH = 255


def _valid_utf8(text: str) -> bool:
    return not any("\udc80" <= char <= "\udcff" for char in text)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the client says it is: ``user`` normalised, ``original`` as sent."""

    user: str
    original: str
    valid: bool = True

    def reply_fields(self) -> tuple[tuple[str, str | None], ...]:
        """``original_user=`` when it differs from ``user`` (or the name was refused)."""
        if self.valid and self.original == self.user:
            return ()
        return (("original_user", self.original),)


@dataclass(frozen=True, slots=True)
class UsernamePolicy:
    lowercase: bool = True
    allowed_chars: frozenset[str] = field(default=frozenset(DEFAULT_ALLOWED_CHARS))
    default_domain: str = ""
    max_length: int = DEFAULT_MAX_LENGTH

    def identify(self, name: str) -> Identity:
        user = name
        if self.default_domain and "@" not in user:
            user = f"{user}@{self.default_domain}"
        if len(user) > self.max_length or not _valid_utf8(user):
            return Identity(name, name, valid=False)
        if not user or not self.allowed_chars.issuperset(user):
            return Identity(name, name, valid=False)
        if self.lowercase:
            user = user.lower()
        return Identity(user, name)
