"""One authentication attempt in progress in a session, and the fields of its FAIL reply."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from saslauth import mechanisms as mech
from saslauth.events import AuthRequest, Fields
from saslauth.passdb import Lookup
from saslauth.usernames import Identity


@dataclass(slots=True)
class Attempt:
    """A request in progress: what its log line names and its state."""

    id: int
    mechanism: str
    service: str
    rip: str | None
    lip: str | None
    secured: bool
    # The mechanism's generator; None when it decided at once (mech.Immediate) and only the
    # password check named by ``identity`` is outstanding.
    exchange: mech.Exchange | None
    started: float
    identity: Identity | None = None
    timer: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, request: AuthRequest, exchange: mech.Exchange | None) -> Attempt:
        return cls(
            request.id,
            request.mechanism,
            request.service,
            request.rip,
            request.lip,
            request.secured,
            exchange,
            time.monotonic(),
        )


def fail_fields(identity: Identity | None, lookup: Lookup | None, *, temporary: bool) -> Fields:
    """FAIL fields in Dovecot's order: user, nodelay, code, passdb fields, original_user."""
    fields: list[tuple[str, str | None]] = []
    if identity is not None:
        fields.append(("user", identity.user))
    if lookup is not None and lookup.nodelay:
        fields.append(("nodelay", None))
    if temporary:
        fields.append(("code", "temp_fail"))
    if lookup is not None:
        fields.extend(lookup.extra)
    if identity is not None:
        fields.extend(identity.reply_fields)
    return tuple(fields)
