"""The verifier child: the only process that reads password files or talks to backends.

Forked by the master (and, when ``verifier.user`` is not root, switched to that user).  It
serves verify requests arriving on
socket N, many at a time, batching replies into as few writes as possible; CPU-heavy hashes run
in a thread pool (they release the GIL).  It opens no network listener and parses no YAML.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack

from saslauth import logs, verifier
from saslauth.config import Config
from saslauth.errors import VerifierError
from saslauth.passdb import Lookup, Verdict
from saslauth.passdb.chain import Chain
from saslauth.passdb.registry import build_chain

log = logging.getLogger("saslauth.verifier")


class ChildProtocol(asyncio.Protocol):
    def __init__(self, chain: Chain, done: asyncio.Future[None]) -> None:
        self._chain = chain
        self._done = done
        self._reader = verifier.LineReader()
        self._out = bytearray()
        self._transport: asyncio.Transport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(b"READY\t%d\n" % os.getpid())

    def data_received(self, data: bytes) -> None:
        try:
            lines = self._reader.feed(data)
            requests = [verifier.decode_request(line) for line in lines]
        except VerifierError as exc:
            log.error("front process sent garbage (%s); closing", exc)
            assert self._transport is not None
            self._transport.close()
            return
        for seq, request in requests:
            task = asyncio.ensure_future(self._serve(seq, request))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, seq: int, request: verifier.VerifyRequest) -> None:
        try:
            lookup = await self._chain.verify_plain(request)
        except Exception:
            log.exception("bug while verifying user %s", request.user)
            lookup = Lookup(Verdict.INTERNAL_FAILURE, log_reason="internal error")
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out += verifier.encode_reply(seq, lookup)

    def _flush(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(bytes(self._out))
        self._out.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_result(None)


async def serve(sock: socket.socket, config: Config) -> None:
    threads = config.verifier.threads or os.cpu_count() or 2
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(threads, thread_name_prefix="verify") as executor:
        async with AsyncExitStack() as stack:
            chain = build_chain(list(config.passdb), executor)
            await chain.start(stack)
            done: asyncio.Future[None] = loop.create_future()
            transport, _ = await loop.create_connection(
                lambda: ChildProtocol(chain, done), sock=sock
            )
            stack.callback(transport.close)
            log.info(
                "verifier ready (pid %d, uid %d, %d threads)", os.getpid(), os.getuid(), threads
            )
            await done


def run_verifier(sock: socket.socket, config: Config) -> int:
    """Entry point of the forked verifier child."""
    logs.setup(config.log_level, "verifier")
    asyncio.run(serve(sock, config))
    return 0
