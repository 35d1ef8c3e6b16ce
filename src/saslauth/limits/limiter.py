"""What the session calls around each password verification.

:meth:`Limiter.verify` has the shape of the verifier client's ``verify``: it checks the
attempt's scores, waits the penalty (if any), refuses or verifies, and records the result.
A delayed failure is held until penalty + ``failure_delay`` so the session answers it at once;
the whole answer never takes longer than ``max_delay``.  A refusal is an ordinary FAIL on the
wire (the session still applies ``failure_delay``); the log line says ``limited=refused:...``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from saslauth.limits.keys import Fingerprints, Keys, client_network, trusted
from saslauth.limits.policy import ALLOW, Decision, Snapshot, decide
from saslauth.limits.settings import LimitsSettings
from saslauth.limits.store import Bounded, MemoryStore, Store, distinct_add, distinct_count
from saslauth.passdb import Lookup, Verdict
from saslauth.verifier import VerifyRequest

log = logging.getLogger("saslauth.limits")

Verify = Callable[[VerifyRequest], "asyncio.Future[Lookup]"]
GUESSES = frozenset({Verdict.PASSWORD_MISMATCH, Verdict.USER_UNKNOWN})


def build_store(settings: LimitsSettings) -> Store:
    if settings.backend == "redis":
        from saslauth.limits.redis_store import FallbackStore

        return FallbackStore(settings)
    return MemoryStore(settings)


class Limiter:
    def __init__(
        self,
        settings: LimitsSettings,
        failure_delay: float,
        *,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
        fingerprints: Fingerprints | None = None,
    ) -> None:
        self.settings = settings
        self.failure_delay = failure_delay
        self.store = store if store is not None else build_store(settings)
        self.clock = clock
        self._fp = fingerprints or Fingerprints()
        self._recent: Bounded[list[tuple[bytes, float]]] = Bounded(settings.max_entries)
        self._passwords: Bounded[dict[str, float]] = Bounded(settings.max_entries)
        self._tasks: set[asyncio.Future[Any]] = set()
        # Attempts checked but not yet decided count as failures in the making (distinct
        # passwords per pair and per user, distinct users per password), so parallel
        # connections cannot all slip through between the check and the record.  Not for the
        # network-wide counts: colleagues logging in at once behind one NAT must not add up.
        self._inflight: dict[str, dict[bytes, int]] = {}

    # ---- decisions ------------------------------------------------------------------------
    def keys(self, request: VerifyRequest) -> Keys | None:
        """The attempt's keys, or None for a trusted network (no limits, nothing recorded)."""
        s = self.settings
        if trusted(request.rip, s.trusted_networks):
            return None
        return Keys.of(client_network(request.rip, s.ipv4_prefix, s.ipv6_prefix), request.user)

    def _password_key(self, request: VerifyRequest) -> str:
        return self._fp.of(b"password", request.password).hex()

    async def check(self, request: VerifyRequest) -> tuple[Keys | None, Decision]:
        keys = self.keys(request)
        if keys is None:
            return None, ALLOW
        now = self.clock()
        snapshot = await self.store.snapshot(keys, now)
        sprayed = self._passwords.get(self._password_key(request), now)
        window = self.settings.spray_password.window
        sprays = distinct_count(sprayed, now, window)
        def n(key: str) -> int:
            return len(self._inflight.get(key, ()))

        snapshot = dataclasses.replace(
            snapshot,
            user=snapshot.user + n(keys.user),
            pair=snapshot.pair + n(keys.pair),
            spray_password=sprays + n("pw:" + self._password_key(request)),
        )
        return keys, decide(snapshot, self.settings, self.failure_delay)

    def _claims(self, keys: Keys, request: VerifyRequest) -> tuple[tuple[str, bytes], ...]:
        password = self._fp.of(b"p", request.password)
        user = request.user.encode("utf-8", "surrogateescape")
        return (
            (keys.user, password),
            (keys.pair, password),
            ("pw:" + self._password_key(request), user),
        )

    def _claim(self, claims: tuple[tuple[str, bytes], ...], step: int) -> None:
        for key, member in claims:
            members = self._inflight.setdefault(key, {})
            count = members.get(member, 0) + step
            if count > 0:
                members[member] = count
            else:
                members.pop(member, None)
                if not members:
                    del self._inflight[key]

    async def snapshot(self, request: VerifyRequest) -> Snapshot:
        """The current counts for a request (tests and diagnostics)."""
        keys = self.keys(request)
        return Snapshot() if keys is None else await self.store.snapshot(keys, self.clock())

    # ---- recording ------------------------------------------------------------------------
    def _seen(self, key: str, fingerprint: bytes, now: float, ttl: float) -> bool:
        """True if this fingerprint was recorded for ``key`` within ``ttl``; records it."""
        recent = [(fp, at) for fp, at in self._recent.get(key, now) or [] if at > now - ttl]
        seen = any(fp == fingerprint for fp, _ in recent)
        recent = [(fp, at) for fp, at in recent if fp != fingerprint] + [(fingerprint, now)]
        self._recent.put(key, recent[-self.settings.repeat_memory :], now + ttl)
        return seen

    async def record(self, keys: Keys, request: VerifyRequest, lookup: Lookup) -> None:
        now = self.clock()
        s = self.settings
        if lookup.verdict is Verdict.OK:
            self._recent.pop(keys.pair)
            await self.store.success(keys, now)
            return
        if lookup.verdict not in GUESSES or lookup.nodelay:
            return
        password, user = request.password, request.user.encode("utf-8", "surrogateescape")
        fp = self._fp.of
        new_network = not self._seen(keys.network, fp(b"n", user, password), now, s.network.window)
        new_user = not self._seen(keys.user, fp(b"u", password), now, s.user.window)
        new_pair = not self._seen(keys.pair, fp(b"p", password), now, s.pair.window)
        if not (new_network or new_user or new_pair):
            return  # the same wrong password again (a client with an old saved password)
        window = s.spray_password.window
        password_key = self._password_key(request)
        users = self._passwords.get(password_key, now) or {}
        distinct_add(users, request.user, now, window, s.spray_password.refuse)
        self._passwords.put(password_key, users, now + window)
        await self.store.failure(keys, now, network=new_network, user=new_user, pair=new_pair)

    # ---- the verify wrapper ---------------------------------------------------------------
    def verify(self, inner: Verify, request: VerifyRequest) -> asyncio.Future[Lookup]:
        future: asyncio.Future[Lookup] = asyncio.get_running_loop().create_future()
        self._spawn(self._attempt(inner, request, future))
        return future

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(job)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("limits: %s", task.exception())

    async def _attempt(
        self, inner: Verify, request: VerifyRequest, future: asyncio.Future[Lookup]
    ) -> None:
        started = time.monotonic()
        try:
            keys, decision = await self.check(request)
        except Exception:  # a limiter bug must not fail logins
            log.exception("limits: check failed; not limiting this attempt")
            keys, decision = None, ALLOW
        if decision.refused:
            _resolve(future, Lookup(Verdict.RATE_LIMITED, limited=decision.log_text))
            return
        claims = self._claims(keys, request) if keys is not None else ()
        self._claim(claims, +1)
        try:
            if decision.delay > 0:
                await asyncio.sleep(decision.delay)
            lookup = await self._verified(inner, request, started if decision.delay else None)
        except BaseException as exc:
            self._claim(claims, -1)
            if not isinstance(exc, Exception):
                raise  # cancelled: the daemon is stopping
            if not future.done():
                future.set_exception(exc)
            return
        text = decision.log_text
        answer = lookup if text is None else dataclasses.replace(lookup, limited=text)
        if decision.delay > 0 and lookup.verdict is not Verdict.OK and not lookup.nodelay:
            # Penalty + failure delay, as Dovecot does; the session then answers at once.
            if keys is not None:
                await self._record(keys, request, lookup, claims)
            await asyncio.sleep(started + decision.delay + self.failure_delay - time.monotonic())
            _resolve(future, answer)
            return
        _resolve(future, answer)  # answer first, then record (Redis may take a moment)
        if keys is not None:
            await self._record(keys, request, lookup, claims)

    async def _verified(
        self, inner: Verify, request: VerifyRequest, budget_from: float | None
    ) -> Lookup:
        pending = inner(request)
        if budget_from is None:
            return await pending
        remaining = budget_from + self.settings.max_delay - time.monotonic()
        try:
            async with asyncio.timeout(max(0.0, remaining)):
                return await asyncio.shield(pending)
        except TimeoutError:
            return Lookup(Verdict.INTERNAL_FAILURE, log_reason="no answer within limits.max_delay")

    async def _record(
        self,
        keys: Keys,
        request: VerifyRequest,
        lookup: Lookup,
        claims: tuple[tuple[str, bytes], ...],
    ) -> None:
        try:
            await self.record(keys, request, lookup)
        except Exception:
            log.exception("limits: recording the attempt failed")
        finally:
            self._claim(claims, -1)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.store.close()


def _resolve(future: asyncio.Future[Lookup], lookup: Lookup) -> None:
    if not future.done():
        future.set_result(lookup)


_LIMITERS: dict[tuple[LimitsSettings, float], Limiter] = {}


def limiter_for(settings: LimitsSettings | None, failure_delay: float) -> Limiter | None:
    """One limiter per settings: a reload with unchanged ``limits:`` keeps the counts."""
    if settings is None or not settings.enabled:
        return None
    key = (settings, failure_delay)
    if key not in _LIMITERS:
        _LIMITERS.clear()
        _LIMITERS[key] = Limiter(settings, failure_delay)
    return _LIMITERS[key]

