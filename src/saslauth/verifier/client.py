"""Front-process side of the verifier connection.

Multiplexes verify requests over one socket to the verifier child by sequence number, batching
every request made in one event-loop turn into a single write.  When the child dies, requests
in flight fail with :class:`VerifierError` (a temporary failure for the client); new requests
wait a short while for the replacement the master starts, then fail the same way.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import cast

from saslauth import verifier
from saslauth.errors import VerifierError
from saslauth.passdb import Lookup

log = logging.getLogger("saslauth.front")

REPLY_TIMEOUT = 7.0  # Postfix gives up after 10 s; leave room for the failure delay
ATTACH_WAIT = 3.0  # how long a request waits for a replacement verifier
SWEEP_EVERY = 0.25  # one timer checks every deadline this often (no timer per request)


class _Link(asyncio.Protocol):
    def __init__(self, owner: VerifierClient) -> None:
        self.owner = owner
        self.reader = verifier.LineReader()
        self.transport: asyncio.Transport | None = None
        self.ready = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            for line in self.reader.feed(data):
                if not self.ready:
                    if not line.startswith(b"READY\t"):
                        raise VerifierError("verifier did not say READY")
                    self.ready = True
                    self.owner.link_ready(self)
                    continue
                seq, lookup = verifier.decode_reply(line)
                self.owner.resolve(seq, lookup)
        except VerifierError as exc:
            log.error("verifier spoke garbage (%s); dropping it", exc)
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.link_lost(self)


class VerifierClient:
    def __init__(self, on_broken: Callable[[], None] = lambda: None) -> None:
        self._seq = 0
        self._pending: dict[int, tuple[asyncio.Future[Lookup], float]] = {}  # seq -> deadline
        self._sweeper: asyncio.TimerHandle | None = None
        self._link: _Link | None = None
        self._out = bytearray()
        self._backlog: list[tuple[int, bytes]] = []
        self._on_broken = on_broken
        self._attached = asyncio.Event()

    async def attach(self, sock: socket.socket) -> None:
        """Start talking to a (new) verifier child over ``sock``."""
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: _Link(self), sock=sock)

    def link_ready(self, link: _Link) -> None:
        self._link = link
        log.info("verifier connected")
        for _seq, data in self._backlog:
            self._queue(data)
        self._backlog.clear()

    def link_lost(self, link: _Link) -> None:
        if self._link is not link and link.ready:
            return
        self._link = None
        if link.ready:
            log.error("verifier connection lost; failing %d requests in flight", len(self._pending))
        for seq in list(self._pending):
            self._fail(seq, VerifierError("verifier went away"))
        self._on_broken()

    @property
    def connected(self) -> bool:
        return self._link is not None

    def verify(self, request: verifier.VerifyRequest) -> asyncio.Future[Lookup]:
        loop = asyncio.get_running_loop()
        self._seq += 1
        seq = self._seq
        future: asyncio.Future[Lookup] = loop.create_future()
        data = verifier.encode_request(seq, request)
        if self._link is not None:
            timeout = REPLY_TIMEOUT
            self._queue(data)
        else:
            timeout = ATTACH_WAIT
            self._backlog.append((seq, data))
        self._pending[seq] = (future, loop.time() + timeout)
        if self._sweeper is None:
            self._sweeper = loop.call_later(SWEEP_EVERY, self._sweep)
        return future

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

    def _queue(self, data: bytes) -> None:
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out += data

    def _flush(self) -> None:
        link = self._link
        if link is not None and link.transport is not None and not link.transport.is_closing():
            link.transport.write(bytes(self._out))
        self._out.clear()

    def resolve(self, seq: int, lookup: Lookup) -> None:
        entry = self._pending.pop(seq, None)
        if entry is None:
            return  # it timed out already
        future = entry[0]
        if not future.done():
            future.set_result(lookup)

    def _fail(self, seq: int, error: Exception) -> None:
        entry = self._pending.pop(seq, None)
        if entry is None:
            return
        future = entry[0]
        if not future.done():
            future.set_exception(error)

    def _timed_out(self, seq: int) -> None:
        self._backlog = [(s, d) for s, d in self._backlog if s != seq]
        state = "answer" if self._link is not None else "start"
        self._fail(seq, VerifierError(f"verifier did not {state} in time"))

    def close(self) -> None:
        if self._link is not None and self._link.transport is not None:
            self._link.transport.close()
