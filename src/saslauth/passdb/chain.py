"""Runs the configured passdbs in order with Dovecot's default chain semantics.

First OK wins; ``unknown user`` and ``password mismatch`` go on to the next passdb; an internal
failure goes on too, but if nothing later succeeds the answer is a temporary failure.  Extra
fields that Dovecot handles for every passdb are applied here once: ``allow_nets``, ``nologin``,
``nodelay`` and ``user``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import ClassVar, Protocol

from saslauth import cache as verifycache
from saslauth.errors import BackendError
from saslauth.passdb import Lookup, Verdict
from saslauth.verifier import VerifyRequest

log = logging.getLogger("saslauth.passdb")


class PassDB(Protocol):
    """A password database driver, as the verifier child runs it."""

    driver: ClassVar[str]
    name: str

    async def verify_plain(self, request: VerifyRequest) -> Lookup:
        """Check a password.  Raises BackendError when the backend cannot answer."""
        ...


# A passdb's optional ``answer_now(user, password)``: verify_plain's answer when it needs no
# waiting, else None (then verify_plain).  Raises BackendError as verify_plain does.
AnswerNow = Callable[[str, bytes], Lookup | None]


def _allowed(nets: str, rip: str | None) -> bool:
    for net in nets.replace(",", " ").split():
        if net == "local":
            if rip is None:
                return True
            continue
        if rip is None:
            continue
        try:
            if ipaddress.ip_address(rip) in ipaddress.ip_network(net, strict=False):
                return True
        except ValueError:
            log.warning("allow_nets: ignoring invalid network %r", net)
    return False


# Fields Dovecot consumes itself and never returns to the client.
HIDDEN_FIELDS = frozenset({"user", "allow_nets"})


def apply_fields(lookup: Lookup, rip: str | None) -> Lookup:
    """Apply the generic extra fields to a passdb's answer, exactly as Dovecot 2.3 does.

    ``user=`` renames the user, also in a FAIL.  ``allow_nets`` turns a right password from
    elsewhere (``rip``, the client's address) into a plain (delayed) failure.  On a failure
    nothing else is returned, not even ``nodelay``.  On success the other fields, ``nologin``
    and ``nodelay`` included, go back in OK; when every field was hidden, Dovecot leaves one
    empty field, and so do we.
    """
    if not lookup.extra:
        return lookup  # nothing to apply: the steps below would rebuild an equal Lookup
    if lookup.verdict is Verdict.OK and HIDDEN_FIELDS.isdisjoint([k for k, _ in lookup.extra]):
        return lookup  # the same: no rename, no net check, every field is visible
    extra = dict(lookup.extra)
    user = extra.get("user") or lookup.user
    if lookup.verdict is not Verdict.OK:
        return replace(lookup, user=user, extra=())
    nets = extra.get("allow_nets")
    if nets is not None and not _allowed(nets, rip):
        return Lookup(
            Verdict.PASSWORD_MISMATCH,
            user=user,
            backend=lookup.backend,
            log_reason=f"allow_nets check failed for rip {rip or 'unknown'}",
        )
    visible = tuple((k, v) for k, v in lookup.extra if k not in HIDDEN_FIELDS)
    if lookup.extra and not visible:
        visible = (("", None),)
    return replace(lookup, user=user, extra=visible)


def _ask(
    passdb: PassDB, request: VerifyRequest, cache: verifycache.VerifyCache | None
) -> Awaitable[Lookup]:
    """``passdb.verify_plain``, through the verification cache for drivers that have no stored
    hash to key it with (those with ``hash_cache = True`` use the cache themselves).  Returns
    the driver's own awaitable where it can: no coroutine of its own per request."""
    if cache is None or getattr(passdb, "hash_cache", False):
        return passdb.verify_plain(request)
    return verifycache.cached_lookup(
        cache, passdb.name, request.user, request.password, lambda: passdb.verify_plain(request)
    )


def _outage(passdb: PassDB, exc: BackendError) -> Lookup:
    log.error("passdb %s: %s", passdb.name, exc)
    return Lookup(Verdict.INTERNAL_FAILURE, backend=passdb.name, log_reason=str(exc))


class Chain:
    def __init__(self, passdbs: Sequence[PassDB]) -> None:
        self.passdbs = list(passdbs)
        # The passdb that can answer_now, when it is the only one (the chain's rules then come
        # down to apply_fields); its answers never go through the cache (hash_cache).
        only = self.passdbs[0] if len(self.passdbs) == 1 else None
        cacheless = getattr(only, "hash_cache", False)
        self._now: AnswerNow | None = getattr(only, "answer_now", None) if cacheless else None

    async def start(self, stack: AsyncExitStack) -> None:
        """Let drivers that hold resources (pools, watchers) open them on the verifier's stack.

        A driver opts in by defining ``async def start(self, stack: AsyncExitStack) -> None``
        and registering its cleanup there; drivers without one need nothing.
        """
        for passdb in self.passdbs:
            start = getattr(passdb, "start", None)
            if start is not None:
                await start(stack)

    def answer_now(self, user: str, password: bytes, rip: str | None) -> Lookup | None:
        """verify_plain's answer for a request of these values, when the chain can give it
        without waiting (one passdb whose answer_now has it); None otherwise."""
        now = self._now
        if now is None:
            return None
        try:
            lookup = now(user, password)
        except BackendError as exc:
            return _outage(self.passdbs[0], exc)
        if lookup is None or not lookup.extra:  # (apply_fields's first test, inline)
            return lookup
        return apply_fields(lookup, rip)

    async def verify_plain(self, request: VerifyRequest) -> Lookup:
        internal: Lookup | None = None
        failure: Lookup | None = None
        cache = verifycache.current()
        for passdb in self.passdbs:
            try:
                lookup = await _ask(passdb, request, cache)
            except BackendError as exc:
                internal = _outage(passdb, exc)
                continue
            lookup = apply_fields(lookup, request.rip)
            if lookup.verdict is Verdict.OK:
                return lookup
            if lookup.verdict is Verdict.INTERNAL_FAILURE:
                internal = lookup
            elif failure is None or failure.verdict is Verdict.USER_UNKNOWN:
                failure = lookup
        if internal is not None:
            return internal
        assert failure is not None
        return failure
