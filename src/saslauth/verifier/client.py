"""Front-process side of the verifier connection.

Multiplexes verify requests over one socket to the verifier child by sequence number, batching
every request made in one event-loop turn into a single write.  When the child dies, requests
in flight fail with :class:`VerifierError` (a temporary failure for the client); new requests
wait a short while for the replacement the master starts, then fail the same way.

On a reload the master hands over a new child: once it says READY it takes every new request,
and the previous child is closed (it then exits) as soon as it has answered what it was sent,
so no request in flight is lost.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from functools import partial
from typing import cast

from saslauth import verifier
from saslauth.errors import VerifierError
from saslauth.passdb import Lookup

log = logging.getLogger("saslauth.front")

REPLY_TIMEOUT = 7.0  # Postfix gives up after 10 s; leave room for the failure delay
ATTACH_WAIT = 3.0  # how long a request waits for a replacement verifier
SWEEP_EVERY = 0.25  # one timer checks every deadline this often (no timer per request)


class _Link(asyncio.Protocol):
    def __init__(self, owner: VerifierClient, order: int) -> None:
        self.owner = owner
        self.order = order  # attach() calls so far: the master hands verifiers in this order
        self.reader = verifier.LineReader()
        self.transport: asyncio.Transport | None = None
        self.ready = False
        self.started: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.outstanding: set[int] = set()  # requests written to this child, not yet answered
        self.pid = 0  # the child's, from its READY line

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        decode, settle = verifier.decode_reply, self.owner.settle
        try:
            for line in self.reader.feed(data):
                if not self.ready:
                    if not line.startswith(b"READY\t"):
                        raise VerifierError("verifier did not say READY")
                    self.ready = True
                    self.pid = int(line[6:]) if line[6:].isdigit() else 0
                    self.owner.link_ready(self)
                    continue
                settle(*decode(line))
        except VerifierError as exc:
            log.error("verifier spoke garbage (%s); dropping it", exc)
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.link_lost(self)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


# Called once per request with the verifier's answer, or the error that stands for it.
Done = Callable[[Lookup | VerifierError], None]
# How a password check is asked for: submit(request, done) (VerifierClient.submit is one).
Submit = Callable[[verifier.VerifyRequest, Done], None]
# The same with the request already encoded: send(fields, done) (VerifierClient.send is one).
Send = Callable[[bytes, Done], None]


def submitted(submit: Submit, request: verifier.VerifyRequest) -> asyncio.Future[Lookup]:
    """``submit``'s answer as a future, a VerifierError as its exception (for the limiter)."""
    future: asyncio.Future[Lookup] = asyncio.get_running_loop().create_future()
    submit(request, partial(_settle, future))
    return future


def _settle(future: asyncio.Future[Lookup], result: Lookup | VerifierError) -> None:
    if future.done():  # cancelled meanwhile
        return
    if isinstance(result, Lookup):
        future.set_result(result)
    else:
        future.set_exception(result)


class VerifierClient:
    def __init__(self, on_broken: Callable[[], None] = lambda: None) -> None:
        self._seq = 0
        # seq -> (done, loop time after which the request fails: the sweeper checks it)
        self._pending: dict[int, tuple[Done, float]] = {}
        self._retiring: list[_Link] = []  # replaced children still owing answers
        self._sweeper: asyncio.TimerHandle | None = None
        self._link: _Link | None = None
        self._queued: list[tuple[int, bytes]] = []  # not yet written to any child
        self._on_broken = on_broken
        # The loop, kept: asyncio.get_running_loop() checks the pid, a getpid() system call.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._attached = 0  # attach() calls so far
        self._adopted = 0  # the order of the link taking requests
        self.pid = 0  # of the child taking requests (or the last one, once it broke); 0: none

    async def attach(self, sock: socket.socket) -> _Link:
        """Start talking to a (new) verifier child over ``sock``."""
        loop = asyncio.get_running_loop()
        self._attached += 1
        order = self._attached
        _, link = await loop.create_connection(lambda: _Link(self, order), sock=sock)
        return link

    async def replace(self, sock: socket.socket) -> bool:
        """Attach a new child and wait until it took over; False if it never became READY.

        Callers bound the wait with ``asyncio.timeout``; on expiry the new child is dropped.
        """
        link = await self.attach(sock)
        try:
            return await asyncio.shield(link.started)
        except asyncio.CancelledError:
            link.close()
            raise

    def link_ready(self, link: _Link) -> None:
        if link.order < self._adopted:  # handed before the one taking requests: superseded
            link.started.set_result(False)
            link.close()
            return
        self._adopted = link.order
        old = self._link
        if old is not None:
            self._flush()  # what was queued for the old child goes to it
        self._link = link
        self.pid = link.pid
        log.info("verifier connected")
        if not link.started.done():
            link.started.set_result(True)
        if old is not None:
            if old.outstanding:  # it retires: closed once it owes nothing (_retired)
                self._retiring.append(old)
            else:
                old.close()
        self._flush()

    def link_lost(self, link: _Link) -> None:
        if not link.started.done():
            link.started.set_result(False)
        lost = [seq for seq in link.outstanding if seq in self._pending]
        if lost:
            log.error("verifier connection lost; failing %d requests in flight", len(lost))
        for seq in lost:
            self.settle(seq, VerifierError("verifier went away"))
        if link in self._retiring:
            self._retiring.remove(link)
        if link is self._link:
            self._link = None
            self._on_broken()

    @property
    def connected(self) -> bool:
        return self._link is not None

    def verify(self, request: verifier.VerifyRequest) -> asyncio.Future[Lookup]:
        """:meth:`submit` with the answer as a future (VerifierError as its exception)."""
        return submitted(self.submit, request)

    def submit(self, request: verifier.VerifyRequest, done: Done) -> None:
        """Send ``request``; ``done`` is called once, with the answer or a VerifierError."""
        self.send(verifier.request_fields(request), done)

    def send(self, fields: bytes, done: Done) -> None:
        """:meth:`submit` for a request already encoded (``verifier.request_fields``).

        The per-request path of the front: no future and no extra loop turn between the
        verifier's reply and the session's answer to its client.
        """
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        self._seq += 1
        seq = self._seq
        timeout = REPLY_TIMEOUT if self._link is not None else ATTACH_WAIT
        self._pending[seq] = (done, loop.time() + timeout)
        if self._sweeper is None:
            self._sweeper = loop.call_later(SWEEP_EVERY, self._sweep)
        if not self._queued and self._link is not None:
            loop.call_soon(self._flush)
        self._queued.append((seq, b"V\t%d%s" % (seq, fields)))

    def _flush(self) -> None:
        link = self._link
        if link is None or link.transport is None or link.transport.is_closing():
            return  # stays queued for the next child that says READY
        out = bytearray()
        pending, outstanding = self._pending, link.outstanding
        for seq, data in self._queued:
            if seq in pending:
                outstanding.add(seq)
                out += data
        self._queued.clear()
        if out:
            link.transport.write(bytes(out))

    def _sweep(self) -> None:
        """Fail the requests past their deadline; runs only while some are pending."""
        self._sweeper = None
        if not self._pending:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        for seq in [seq for seq, (_, deadline) in self._pending.items() if deadline <= now]:
            self._timed_out(seq)
        if self._pending:
            self._sweeper = loop.call_later(SWEEP_EVERY, self._sweep)

    def settle(self, seq: int, result: Lookup | VerifierError) -> None:
        """Hand ``result`` to request ``seq``'s ``done``, once; nothing if it is no longer
        pending (it timed out already).  The per-reply call of the front, in one function."""
        entry = self._pending.pop(seq, None)
        if entry is None:
            return
        link = self._link  # (the child it was written to: this one, or one retiring)
        if link is not None:
            link.outstanding.discard(seq)
        if self._retiring:
            self._retired(seq)
        try:  # one requester's bug must not cost the other answers of the same batch
            entry[0](result)
        except Exception:
            log.exception("bug while handing over a verification result")

    def _retired(self, seq: int) -> None:
        """A retiring child that was sent ``seq`` has it answered; closed once it owes none."""
        for link in self._retiring:
            link.outstanding.discard(seq)
        for link in [link for link in self._retiring if not link.outstanding]:
            self._retiring.remove(link)
            link.close()

    def _timed_out(self, seq: int) -> None:
        if seq not in self._pending:
            return
        self._queued = [(s, d) for s, d in self._queued if s != seq]  # if not written yet
        state = "answer" if self._link is not None else "start"
        self.settle(seq, VerifierError(f"verifier did not {state} in time"))

    def close(self) -> None:
        """Shut down: close the link without reporting the verifier as broken."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        link, self._link = self._link, None
        if link is not None:
            link.close()
