"""The lines the server writes (``dovecot-auth-protocol.md`` sections 2 and 3): the greeting,
OK and FAIL lines with their fields, and the immediate FAIL of a :class:`Rejected` request.
Pure rendering: which request may be answered is :class:`saslauth.protocol.ServerConnection`'s
business.
"""

from __future__ import annotations

from collections.abc import Mapping

from saslauth import wire
from saslauth.events import Fields, Rejected

SERVER_VERSION = (1, 2)  # what Dovecot 2.3 announces

# Dovecot's reasons for the FAILs the protocol itself gives (section 3)
REASON_TIMED_OUT = "Authentication request timed out"
REASON_UNEXPECTED = "Unexpected continuation"
REASON_BAD_INITIAL = "Invalid base64 data in initial response"
REASON_BAD_CONTINUED = "Invalid base64 data in continued response"


def greeting(mechanisms: Mapping[str, tuple[str, ...]], spid: int, cuid: int, cookie: str) -> bytes:
    """The whole 2.3 handshake, sent at once on accept.  MECH lines must precede SPID."""
    lines = [b"VERSION\t%d\t%d\n" % SERVER_VERSION]
    for name, flags in mechanisms.items():
        lines.append(wire.join_fields([b"MECH", name.encode(), *(f.encode() for f in flags)]))
    lines.append(b"SPID\t%d\nCUID\t%d\nCOOKIE\t%s\nDONE\n" % (spid, cuid, cookie.encode()))
    return b"".join(lines)


def render(parts: list[bytes], fields: Fields) -> bytes:
    """An OK or FAIL line: ``parts`` (its tag, id and so on), then ``fields``."""
    for name, value in fields:
        field = name.encode()
        if value is not None:
            field += b"=" + wire.encode_text(value)
        parts.append(field)
    return wire.join_fields(parts)


def reject(event: Rejected) -> bytes:
    """The immediate FAIL line for a :class:`Rejected` event (its id is already inactive)."""
    parts = [b"FAIL", b"%d" % event.id]
    if event.code:
        parts.append(b"code=" + event.code.encode())
    parts.append(b"reason=" + wire.encode_text(event.reason))
    return wire.join_fields(parts)
