"""One client connection: drives the protocol state machine and one mechanism per request.

This is the single place that maps outcomes and exceptions to wire lines.  No task per
request: mechanisms are generators resumed from callbacks (verifier answers, timers), except
that one that can decide from an initial response alone (PLAIN: ``mech.Immediate``) is asked in
one call, with no generator to step.  The usual read, one whole AUTH line of such a request,
goes from ``ServerConnection.quick_auth`` to that call and on to the verifier line without an
AuthRequest or VerifyRequest being made (the transcript tests compare the three paths).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import cast

from saslauth import authlog, wire
from saslauth import mechanisms as mech
from saslauth.attempt import Attempt, fail_fields
from saslauth.errors import LocalProtocolError, RemoteProtocolError
from saslauth.events import AuthRequest, Cancel, Challenge, ClientEvent, Continue, Fail, Rejected
from saslauth.passdb import Lookup, Verdict
from saslauth.protocol import ServerConnection
from saslauth.sessionsettings import SessionSettings
from saslauth.usernames import Identity
from saslauth.verifier import VerifyRequest, encode_fields, make_request, request_fields
from saslauth.verifier.client import Done, Send, submitted

log = logging.getLogger("saslauth.auth")

IDLE_TIMEOUT = 150.0  # Dovecot's MASTER_AUTH_SERVER_TIMEOUT_SECS: a silent request is dropped


class Session(asyncio.Protocol):
    """The protocol object for one accepted connection."""

    def __init__(
        self, settings: SessionSettings, send: Send, cuid: int, cookie: str, peer: str = ""
    ) -> None:
        self.settings = settings
        self._send = send
        self._cuid = cuid
        self._cookie = cookie
        self.peer = peer
        self.conn = ServerConnection(settings.mech_lines)
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, Attempt] = {}
        self._loop = asyncio.get_event_loop()
        self.closed = asyncio.Event()
        self.on_idle: Callable[[], None] | None = None  # called when the last request ends

    # ---- transport callbacks --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.conn.greeting(self.settings.spid, self._cuid, self._cookie))

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        try:
            quick = conn.quick_auth(data, self.settings.immediates)  # the usual read
            if quick is not None:
                self._begin_quick(*quick)
                return
            event = conn.auth_line(data)  # one whole AUTH line all the same
            if event is not None:
                self._handle(event)
                return
            conn.receive_data(data)
            while self.transport is not None:
                event = conn.next_event()
                if event is None:
                    return
                self._handle(event)
        except RemoteProtocolError as exc:
            log.warning("closing connection%s: protocol violation: %s", self._peer_text(), exc)
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        for request_id in list(self.pending):
            self._drop(request_id)
        self.closed.set()

    # ---- request lifecycle ----------------------------------------------------------------
    def _handle(self, event: ClientEvent) -> None:
        if type(event) is AuthRequest:
            self._begin(event)
        elif isinstance(event, Continue):
            self._continue(event)
        elif isinstance(event, Cancel):
            self._drop(event.id)
        else:
            self._reject(cast(Rejected, event))

    def _begin(self, request: AuthRequest) -> None:
        initial = request.initial
        immediate = None if initial is None else self.settings.immediates.get(request.mechanism)
        if immediate is None:
            exchange = self.settings.exchanges[request.mechanism](request)
            pending = Attempt.of(request, exchange)
            self.pending[request.id] = pending
            self._step(pending, None)
            return
        self._decide(Attempt.of(request, None), immediate, cast(bytes, initial))

    def _begin_quick(
        self,
        request_id: int,
        mechanism: str,
        service: bytes,
        initial: bytes,
        lip: str | None,
        rip: str | None,
        secured: bool,
    ) -> None:
        """_begin for what ServerConnection.quick_auth found (no AuthRequest was made), with
        _check's usual case (no limiter: the verifier line made here)."""
        pending = Attempt(
            request_id,
            mechanism,
            service.decode("utf-8", "surrogateescape"),  # (wire.decode_text, inline)
            rip,
            lip,
            secured,
            None,
            time.monotonic(),
        )
        check = self._decided(pending, self.settings.immediates[mechanism], initial)
        if check is None:
            return
        if self.settings.limiter is not None:
            self._check(pending, check)
            return
        # quick_auth's service has no byte that needs escaping: as sent, it is encoded already
        line = encode_fields(check.identity.user, check.password, service, rip, lip, secured)
        self._send(line, partial(self._verified, pending))

    def _decide(
        self,
        pending: Attempt,
        immediate: Callable[[bytes], mech.VerifyPlain | mech.Failure],
        initial: bytes,
    ) -> None:
        """The whole exchange in one call, no generator to step (the commonest login)."""
        check = self._decided(pending, immediate, initial)
        if check is not None:
            self._check(pending, check)

    def _decided(
        self,
        pending: Attempt,
        immediate: Callable[[bytes], mech.VerifyPlain | mech.Failure],
        initial: bytes,
    ) -> mech.VerifyPlain | None:
        """Make ``pending`` active and ask the mechanism: the password check to make, or None
        when the attempt ended there (a failure, or a bug in the mechanism)."""
        self.pending[pending.id] = pending
        try:
            check = immediate(initial)
        except Exception:
            self._mechanism_bug(pending)
            return None
        if isinstance(check, mech.Failure):
            self._fail(pending, check)
            return None
        pending.identity = check.identity
        return check

    def _continue(self, event: Continue) -> None:
        pending = self.pending.get(event.id)
        if pending is None:  # cannot happen: the protocol knows the id is waiting
            raise LocalProtocolError(f"CONT for unknown request {event.id}")
        if pending.timer is not None:
            pending.timer.cancel()
            pending.timer = None
        self._step(pending, mech.ClientResponse(event.data))

    def _reject(self, event: Rejected) -> None:
        if event.aborted:
            self._drop(event.id)
        self._write(self.conn.reject(event))

    def _drop(self, request_id: int) -> None:
        pending = self.pending.pop(request_id, None)
        if pending is not None:
            if pending.timer is not None:
                pending.timer.cancel()
            if pending.exchange is not None:
                pending.exchange.close()
            self._maybe_idle()

    def _maybe_idle(self) -> None:
        if self.on_idle is not None and not self.pending:
            self.on_idle()

    def _expire(self, request_id: int) -> None:
        self._drop(request_id)
        self.conn.expire(request_id)

    def _step(self, pending: Attempt, reply: mech.Reply | None) -> None:
        try:
            effect = cast(mech.Exchange, pending.exchange).send(reply)  # type: ignore[arg-type]
        except StopIteration as stop:
            self._finish(pending, stop.value)
            return
        except Exception:
            self._mechanism_bug(pending)
            return
        request_id = pending.id
        if isinstance(effect, mech.Challenge):
            self._write(self.conn.send(Challenge(request_id, effect.data)))
            pending.timer = self._loop.call_later(IDLE_TIMEOUT, self._expire, request_id)
            return
        self._check(pending, effect)

    def _mechanism_bug(self, pending: Attempt) -> None:
        """A mechanism raised (called from its except block): a temporary failure of this
        request only, logged with the traceback."""
        log.exception("bug in mechanism %s", pending.mechanism)
        self._fail(pending, mech.Failure(None, Lookup(Verdict.INTERNAL_FAILURE)))

    def _check(self, pending: Attempt, effect: mech.VerifyPlain) -> None:
        """Ask the verifier (through the limiter, if any) to check a password."""
        user, password = effect.identity.user, effect.password
        limiter = self.settings.limiter
        if limiter is None:  # the line itself: no VerifyRequest to build and encode
            service = wire.encode_name(pending.service)
            line = encode_fields(user, password, service, pending.rip, pending.lip, pending.secured)
            self._send(line, partial(self._verified, pending))
            return
        request = make_request(
            user, password, pending.service, pending.rip, pending.lip, pending.secured
        )
        future = limiter.verify(partial(submitted, self._submit), request)
        future.add_done_callback(partial(self._limited, pending))

    def _submit(self, request: VerifyRequest, done: Done) -> None:
        self._send(request_fields(request), done)

    def _limited(self, pending: Attempt, future: asyncio.Future[Lookup]) -> None:
        error = future.exception()
        self._verified(pending, future.result() if error is None else error)

    def _verified(self, pending: Attempt, result: Lookup | BaseException) -> None:
        if self.pending.get(pending.id) is not pending:
            return  # cancelled, aborted or disconnected meanwhile: never answer
        if type(result) is not Lookup:
            log.error("verification failed: %s", result)
            result = Lookup(Verdict.INTERNAL_FAILURE, log_reason=str(result))
        identity = pending.identity  # set with the check, unless an exchange asked for it
        if pending.exchange is not None or identity is None:
            self._step(pending, result)
        elif result.verdict is Verdict.OK and not result.user:
            # judged()'s answer for the commonest case, without the Success to unpack
            self._succeed(pending, identity, result)
        else:  # an immediate mechanism's check: the judgement its exchange would return
            self._finish(pending, mech.judged(identity, result))

    def _finish(self, pending: Attempt, outcome: mech.Outcome) -> None:
        if type(outcome) is mech.Success:
            self._succeed(pending, outcome.identity, outcome.lookup)
        else:
            self._fail(pending, cast(mech.Failure, outcome))

    def _succeed(self, pending: Attempt, identity: Identity, lookup: Lookup) -> None:
        request_id = pending.id
        del self.pending[request_id]
        line = self.conn.ok(request_id, identity.user, lookup.extra + identity.reply_fields)
        transport = self.transport
        if transport is not None:  # (_write, inline)
            transport.write(line)
        if self.settings.log_successes:
            authlog.write("ok", identity.user, pending, lookup)
        if self.on_idle is not None and not self.pending:  # (_maybe_idle, inline)
            self.on_idle()

    def _fail(self, pending: Attempt, outcome: mech.Failure) -> None:
        request_id = pending.id
        lookup = outcome.lookup
        temporary = lookup is not None and lookup.verdict is Verdict.INTERNAL_FAILURE
        identity = outcome.identity
        user = identity.user if identity is not None else None
        result = "tempfail" if temporary else "fail"
        authlog.write(result, user, pending, lookup)
        if temporary and self.settings.tempfail == "disconnect":
            # Postfix answers 454 (temporary) only when the connection is lost mid-request.
            self._close()
            return
        nodelay = lookup is not None and lookup.nodelay
        reply = Fail(request_id, fail_fields(identity, lookup, temporary=temporary))
        delay = 0.0 if nodelay else pending.started + self.settings.failure_delay - time.monotonic()
        if delay <= 0:
            self._send_failure(pending, reply)
        else:
            # The id stays active until the FAIL is sent, so it is never answered twice.
            pending.timer = self._loop.call_later(delay, self._send_failure, pending, reply)

    def _send_failure(self, pending: Attempt, reply: Fail) -> None:
        if self.pending.get(reply.id) is not pending:
            return
        del self.pending[reply.id]
        self._write(self.conn.send(reply))
        self._maybe_idle()

    # ---- helpers --------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.connection_lost(None)

    def _peer_text(self) -> str:
        return f" from {self.peer}" if self.peer else ""
