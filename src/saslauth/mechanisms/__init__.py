"""SASL mechanisms as pure generators.

A mechanism never performs I/O.  Its :meth:`Mechanism.exchange` is a generator that *yields
effects* — :class:`Challenge` (send data, get the client's answer) or :class:`VerifyPlain`
(check a password, get a :class:`~saslauth.passdb.Lookup`) — and *returns* an :class:`Outcome`.
``session.py`` drives it.  The typed helpers :func:`challenge` and :func:`verify_password` narrow
the reply type so mechanism code reads ``data = yield from challenge(b"")``.
"""

from __future__ import annotations

import enum
from collections.abc import Generator
from dataclasses import field
from typing import ClassVar, Protocol, cast, runtime_checkable

from saslauth.events import AuthRequest
from saslauth.passdb import Lookup, Verdict
from saslauth.usernames import Identity, UsernamePolicy
from saslauth.values import value


class SecurityFlags(enum.Flag):
    """MECH flag words with Dovecot's bit values (``auth-client-interface.h``)."""

    NONE = 0
    PRIVATE = 0x01
    ANONYMOUS = 0x02
    PLAINTEXT = 0x04
    DICTIONARY = 0x08
    ACTIVE = 0x10
    FORWARD_SECRECY = 0x20
    MUTUAL_AUTH = 0x40

    def words(self) -> list[str]:
        """The flag words in the order Dovecot 2.3 emits them."""
        return [word for flag, word in _FLAG_WORDS if flag in self]


_FLAG_WORDS = (
    (SecurityFlags.PRIVATE, "private"),
    (SecurityFlags.ANONYMOUS, "anonymous"),
    (SecurityFlags.PLAINTEXT, "plaintext"),
    (SecurityFlags.DICTIONARY, "dictionary"),
    (SecurityFlags.ACTIVE, "active"),
    (SecurityFlags.FORWARD_SECRECY, "forward-secrecy"),
    (SecurityFlags.MUTUAL_AUTH, "mutual-auth"),
)


class PassdbNeed(enum.Enum):
    NOTHING = enum.auto()
    VERIFY_PLAIN = enum.auto()
    LOOKUP_CREDENTIALS = enum.auto()


@value
class Challenge:
    data: bytes


@value
class VerifyPlain:
    identity: Identity
    password: bytes = field(repr=False)


@value
class ClientResponse:
    data: bytes = field(repr=False)


@value
class Success:
    identity: Identity
    lookup: Lookup
    final: bytes | None = None


@value
class Failure:
    """``identity`` is None when the mechanism never got a username (no ``user=`` in FAIL)."""

    identity: Identity | None
    lookup: Lookup | None = None


Effect = Challenge | VerifyPlain
Reply = ClientResponse | Lookup
Outcome = Success | Failure
Exchange = Generator[Effect, Reply, Outcome]


def challenge(data: bytes) -> Generator[Effect, Reply, bytes]:
    reply = yield Challenge(data)
    return cast(ClientResponse, reply).data  # the session answers a Challenge with one


def password_check(
    usernames: UsernamePolicy, identity: Identity, password: bytes
) -> VerifyPlain | Failure:
    """The effect that checks a client's password, unless the policy refuses it first.

    A password that is not UTF-8 (or that SASLprep, when on, prohibits) fails like a wrong one,
    with ``user=``, before any backend sees it (:meth:`UsernamePolicy.prepare_password`).
    """
    prepared = usernames.prepare_password(password)
    if prepared is None:
        return Failure(identity)
    return VerifyPlain(identity, prepared)


def verify_password(
    usernames: UsernamePolicy, identity: Identity, password: bytes
) -> Generator[Effect, Reply, Outcome]:
    """:func:`password_check` in an exchange: yields the check, returns its judgement."""
    check = password_check(usernames, identity, password)
    if type(check) is Failure:
        return check
    return (yield from verified(cast(VerifyPlain, check)))


def verified(check: VerifyPlain) -> Generator[Effect, Reply, Outcome]:
    """Yield a password check; return the outcome of the session's answer (a Lookup)."""
    lookup = cast(Lookup, (yield check))
    return judged(check.identity, lookup)


def judged(identity: Identity, lookup: Lookup) -> Outcome:
    """The outcome of a password check: the passdb may have renamed the user."""
    if lookup.user:  # the passdb renamed the user (Dovecot's user= field), also in a FAIL
        identity = Identity(lookup.user, identity.original)
    if lookup.verdict is Verdict.OK:
        return Success(identity, lookup)
    return Failure(identity, lookup)


class Mechanism(Protocol):
    name: ClassVar[str]
    security: ClassVar[SecurityFlags]
    needs: ClassVar[PassdbNeed]

    def __init__(self, usernames: UsernamePolicy) -> None: ...

    def exchange(self, request: AuthRequest) -> Exchange: ...


@runtime_checkable
class Immediate(Protocol):
    """A mechanism that may decide from the initial response alone, with no challenge.

    ``immediate(data)`` is what ``exchange`` does when the request's initial response is
    ``data``, as one call: the password check to make, or the failure.  The session uses it
    instead of stepping a generator for the commonest login (PLAIN with an initial response).
    """

    def immediate(self, data: bytes) -> VerifyPlain | Failure: ...


def registry() -> dict[str, type[Mechanism]]:
    """Built-in mechanisms by name (imported here to keep the plugin modules independent)."""
    from saslauth.mechanisms.login import Login
    from saslauth.mechanisms.plain import Plain

    return {Plain.name: Plain, Login.name: Login}
