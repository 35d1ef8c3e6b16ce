"""The messages of the Dovecot auth-client protocol, one frozen dataclass per line type.

Client to server: :class:`AuthRequest` (AUTH), :class:`Continue` (CONT), :class:`Cancel`
(CANCEL) and :class:`Rejected` (a request the protocol layer refused by itself and that must be
answered with an immediate FAIL).  Server to client: :class:`Ok`, :class:`Challenge`,
:class:`Fail`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field

from saslauth.values import value

# An ordered list of reply fields: (name, value) or (name, None) for a bare word like `nodelay`.
Fields = tuple[tuple[str, str | None], ...]


@value
class AuthRequest:
    """One AUTH line, parsed.  ``initial`` is None when there is no initial response."""

    id: int
    mechanism: str
    service: str
    initial: bytes | None = field(default=None, repr=False)
    lip: str | None = None
    rip: str | None = None
    lport: int | None = None
    rport: int | None = None
    secured: bool = False
    valid_client_cert: bool = False
    no_penalty: bool = False
    final_resp_ok: bool = False
    params: Mapping[bytes, bytes] = field(default_factory=dict, repr=False)  # every key=value


@value
class Continue:
    """Client data for a request that is waiting for it (already base64-decoded)."""

    id: int
    data: bytes = field(repr=False)


@value
class Cancel:
    """The client abandons a request.  Dovecot 2.3 sends no reply."""

    id: int


@value
class Rejected:
    """A protocol-level failure: answer at once with ``FAIL id [code=...] reason=...``.

    ``aborted`` is True when the id belonged to a running request, which the session must drop
    without ever answering it (the FAIL sent for the rejection is its one reply).
    """

    id: int
    reason: str
    code: str | None = None
    aborted: bool = False


ClientEvent = AuthRequest | Continue | Cancel | Rejected


@value
class Ok:
    id: int
    user: str
    fields: Fields = ()


@value
class Challenge:
    id: int
    data: bytes


@value
class Fail:
    id: int
    fields: Fields = ()


ServerEvent = Ok | Challenge | Fail
