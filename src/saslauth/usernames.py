"""Username normalisation with Dovecot 2.3's defaults (``auth_request_fix_username``).

Order, as in Dovecot: append ``@default_domain`` when the name has no ``@``; check every
character against ``allowed_chars``; lower-case; refuse the empty name.  A refused name is
reported with ``user=`` and ``original_user=`` both set to the name as received (observed:
``FAIL\\t1\\tuser=alice+tag\\toriginal_user=alice+tag``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Dovecot's auth_username_chars default (the digits really are listed with 0 twice).
DEFAULT_ALLOWED_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567890.-_@"


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

    def identify(self, name: str) -> Identity:
        user = name
        if self.default_domain and "@" not in user:
            user = f"{user}@{self.default_domain}"
        if not user or not self.allowed_chars.issuperset(user):
            return Identity(name, name, valid=False)
        if self.lowercase:
            user = user.lower()
        return Identity(user, name)
