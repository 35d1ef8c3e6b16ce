"""Rules shared by the system-account drivers (``shadow``, ``pam``): names and account policy.

**Names.**  A system account has no domain.  A login name without ``@`` is looked up as it is.
A name with ``@`` is an unknown user unless the domain (after the last ``@``, compared without
case) is in ``allowed_domains`` or ``strip_domain`` is true; then only the part before it is
looked up.  The client's name is still the one reported (OK ``user=``, Postfix's
``sasl_username``).  Names that no Unix tool would create (``:``, ``/``, blanks, a leading
``-``, longer than 256) are unknown users too.

**Policy.**  ``min_uid`` (default 1000, Debian's UID_MIN) and ``max_uid`` bound the uid;
``allow_groups`` (any of them; empty: no restriction) and ``deny_groups`` (none of them) look
at the primary and supplementary groups.  A refused account is checked like an unknown one (a
dummy check that costs the same), so the answer and its timing do not say which rule failed;
the reason goes to the log only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from saslauth.config import SystemAccountSettings

_BAD_NAME = re.compile(r"[:/\s\x00-\x1f\x7f]|^-")
MAX_NAME = 256


def system_name(user: str, settings: SystemAccountSettings) -> tuple[str | None, str | None]:
    """(account name, None), or (None, reason) when the name cannot be a system account."""
    name = user
    if "@" in user:
        local, _, domain = user.rpartition("@")
        allowed = {d.lower() for d in settings.allowed_domains}
        if domain.lower() in allowed or settings.strip_domain:
            name = local
        else:
            return None, "name has a domain (see strip_domain / allowed_domains)"
    if not name or len(name) > MAX_NAME or _BAD_NAME.search(name) or "@" in name:
        return None, "not a valid system account name"
    return name, None


def policy_refusal(
    uid: int, groups: Iterable[str], settings: SystemAccountSettings
) -> str | None:
    """Why the account may not log in here (for the log), or None when it may."""
    if settings.min_uid is not None and uid < settings.min_uid:
        return f"uid {uid} below min_uid {settings.min_uid}"
    if settings.max_uid is not None and uid > settings.max_uid:
        return f"uid {uid} above max_uid {settings.max_uid}"
    if not settings.allow_groups and not settings.deny_groups:
        return None
    member = set(groups)
    denied = sorted(member.intersection(settings.deny_groups))
    if denied:
        return f"in deny_groups ({denied[0]})"
    if settings.allow_groups and not member.intersection(settings.allow_groups):
        return "in none of allow_groups"
    return None


def needs_groups(settings: SystemAccountSettings) -> bool:
    return bool(settings.allow_groups or settings.deny_groups)
