"""An IMAP client connection as an asyncio protocol, and the command/response dance on it.

:class:`Connection` turns received bytes into responses (the first error sticks, so a reader
waiting for a reply sees it); :class:`Session` sends tagged commands, waits for ``+`` before each
literal, skips (and learns capabilities from) untagged responses, and treats ``BYE`` and
foreign tags as outages.  Passwords pass through :meth:`Session.run` and
:meth:`Session.authenticate_plain` only and are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import ssl
from typing import cast

from saslauth.errors import BackendError
from saslauth.passdb.imap_wire import (
    ImapProtocolError,
    Response,
    ResponseReader,
    command,
    printable,
)

MAX_UNTAGGED = 100  # untagged responses tolerated while waiting for one tagged reply


class Connection(asyncio.Protocol):
    """Bytes in, :class:`Response` objects out; the first error sticks."""

    def __init__(self) -> None:
        self.reader = ResponseReader()
        self.responses: collections.deque[Response] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.error: BackendError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.responses.extend(self.reader.feed(data))
        except ImapProtocolError as exc:
            self._fail(exc)
            if self.transport is not None:
                self.transport.abort()
        self._wake()

    def eof_received(self) -> bool:
        self._fail(BackendError("the server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        plain_os_error = isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError)
        reason = f": {exc}" if plain_os_error else ""
        self._fail(BackendError(f"connection lost{reason}"))
        if not self._closed.done():
            self._closed.set_result(None)

    def _fail(self, error: BackendError) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def response(self) -> Response:
        while not self.responses:
            if self.error is not None:
                raise self.error
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self.responses.popleft()

    def write(self, data: bytes) -> None:
        if self.error is not None:
            raise self.error
        assert self.transport is not None
        self.transport.write(data)

    async def close(self, *, abort: bool = False, wait: float = 1.0) -> None:
        """Close (TLS: with close_notify) and wait until the socket is gone; abort if slow."""
        if self.transport is None:
            return
        if abort:
            self.transport.abort()
        else:
            self.transport.close()
        if wait <= 0:
            return
        try:
            async with asyncio.timeout(wait):
                await asyncio.shield(self._closed)
        except TimeoutError:
            self.transport.abort()


class Session:
    """One IMAP conversation: tags, capabilities, tagged commands with literal continuations."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.capabilities: frozenset[str] | None = None
        self._tags = 0

    def tag(self) -> bytes:
        self._tags += 1
        return b"a%d" % self._tags

    async def next(self, tag: bytes, *, bye_ok: bool = False) -> Response:
        """The next continuation or tagged response for ``tag``, past untagged ones."""
        for _ in range(MAX_UNTAGGED):
            response = await self.conn.response()
            if response.tag == b"*":
                if response.kind == b"BYE" and not bye_ok:
                    raise BackendError(f"the server said BYE: {printable(response.text)}")
                caps = response.capabilities
                if caps is not None:
                    self.capabilities = caps
                continue
            if response.tag in (b"+", tag):
                return response
            raise ImapProtocolError("response with a tag this client never sent")
        raise ImapProtocolError("too many untagged responses")

    async def tagged(self, tag: bytes) -> Response:
        response = await self.next(tag)
        if response.tag == b"+":
            raise ImapProtocolError("unexpected continuation request")
        return response

    async def run(self, verb: bytes, *args: bytes) -> Response:
        """Send a command (waiting for ``+`` before each literal); return its tagged reply."""
        tag = self.tag()
        first, *rest = command(tag, verb, *args)
        self.conn.write(first)
        for chunk in rest:
            response = await self.next(tag)
            if response.tag != b"+":
                return response  # the server refused the literal
            self.conn.write(chunk)
        return await self.tagged(tag)

    async def authenticate_plain(self, user: bytes, password: bytes) -> Response:
        tag = self.tag()
        ir = base64.b64encode(b"\0" + user + b"\0" + password)
        assert self.capabilities is not None
        if "SASL-IR" in self.capabilities:
            self.conn.write(tag + b" AUTHENTICATE PLAIN " + ir + b"\r\n")
            return await self.tagged(tag)
        self.conn.write(tag + b" AUTHENTICATE PLAIN\r\n")
        response = await self.next(tag)
        if response.tag == b"+":
            self.conn.write(ir + b"\r\n")
            response = await self.tagged(tag)
        return response

    async def capability(self) -> frozenset[str]:
        response = await self.run(b"CAPABILITY")
        if response.kind != b"OK":
            raise BackendError(f"CAPABILITY failed: {printable(response.text)}")
        caps = response.capabilities or self.capabilities
        if caps is None:
            raise ImapProtocolError("no CAPABILITY response")
        self.capabilities = caps
        return caps
