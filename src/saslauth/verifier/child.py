"""The verifier child: the only process that reads password files or talks to backends.

Forked by the master (and, when ``verifier.user`` is not root, switched to that user).  It
serves verify requests arriving on
socket N, many at a time, batching replies into as few writes as possible; CPU-heavy hashes run
in a thread pool (they release the GIL).  It opens no network listener and parses no YAML.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import signal
import socket
import types
from collections.abc import Awaitable, Coroutine, Generator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from functools import partial
from typing import Any, cast

from saslauth import cache as verifycache
from saslauth import flush, hardening, logs, loops, verifier
from saslauth.config import Config
from saslauth.errors import VerifierError
from saslauth.passdb import Lookup, Verdict
from saslauth.passdb.chain import Chain
from saslauth.passdb.registry import build_chain

log = logging.getLogger("saslauth.verifier")


_INTERNAL = Lookup(Verdict.INTERNAL_FAILURE, log_reason="internal error")


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Lookup], waiting: Any) -> Generator[Any, Any, Lookup]:
    """Go on with a coroutine whose first step already ran and is waiting on ``waiting``.

    Its task waits for ``waiting`` (an asyncio future, or None for a bare yield) and then
    resumes the coroutine, which reads the future's result itself.
    """
    try:
        yield waiting
    except BaseException as exc:  # cancelled while waiting: let the coroutine clean up
        coro.throw(exc)
        raise
    return (yield from coro.__await__())


class ChildProtocol(asyncio.Protocol):
    def __init__(self, chain: Chain, done: asyncio.Future[None]) -> None:
        self._chain = chain
        self._done = done
        self._reader = verifier.LineReader()
        self._encoder = verifier.ReplyEncoder()
        self._out = bytearray()
        self._transport: asyncio.Transport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Drivers that need no task of their own (no asyncio.timeout, ...) allow the direct path.
        self._direct = all(getattr(p, "task_free", False) for p in chain.passdbs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self._transport = cast(asyncio.Transport, transport)
        # kept: asyncio.get_running_loop() checks the pid, a getpid() system call
        self._loop = asyncio.get_running_loop()
        self._transport.write(b"READY\t%d\n" % os.getpid())

    def data_received(self, data: bytes) -> None:
        try:
            lines = self._reader.feed(data)
            # Every line is read before any is served: garbage anywhere closes with no answer.
            items = [
                verifier.usual_request(line) or verifier.decode_request(line) for line in lines
            ]
        except VerifierError as exc:
            log.error("front process sent garbage (%s); closing", exc)
            assert self._transport is not None
            self._transport.close()
            return
        outcome = verifycache.outcome
        answer_now, encode, out = self._chain.answer_now, self._encoder.encode, self._out
        for item in items:
            if isinstance(item, list):  # the usual line: answered here when the chain can
                # (no VerifyRequest, coroutine or cache: the cache is never consulted there)
                _, number, user, password, _, rip, _, _ = item
                name = user.decode("utf-8", "surrogateescape")
                try:
                    lookup = answer_now(
                        name, password, rip.decode("utf-8", "surrogateescape") if rip else None
                    )
                except Exception:
                    log.exception("bug while verifying user %s", name)
                    lookup = _INTERNAL
                if lookup is not None:  # (_reply, inline)
                    if not out:
                        self._loop.call_soon(self._flush)
                    out += encode(int(number), lookup, "")
                    continue
                item = verifier.request_of(item)
            seq, request = item
            if outcome.get():  # tasks copy this context: each starts with no state
                outcome.set("")  # (only set when it is not: it stays "" with no cache)
            if self._direct:
                self._serve_direct(seq, request)
            else:
                self._spawn(self._serve(seq, request, self._chain.verify_plain(request)))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro, context=contextvars.copy_context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _serve_direct(self, seq: int, request: verifier.VerifyRequest) -> None:
        """Run the chain's first step right here: a cheap scheme or a cache hit finishes in it,
        with no task; only a verification that has to wait (a hash on a thread) gets one."""
        coro = self._chain.verify_plain(request)
        try:
            waiting = coro.send(None)
        except StopIteration as stop:
            self._reply(seq, stop.value, verifycache.outcome.get())
            return
        except Exception:
            log.exception("bug while verifying user %s", request.user)
            self._reply(seq, _INTERNAL, "")
            return
        self._spawn(self._serve(seq, request, _resume(coro, waiting)))

    async def _serve(
        self, seq: int, request: verifier.VerifyRequest, verify: Awaitable[Lookup]
    ) -> None:
        try:
            lookup = await verify
        except Exception:
            log.exception("bug while verifying user %s", request.user)
            lookup = _INTERNAL
        self._reply(seq, lookup, verifycache.outcome.get())

    def _reply(self, seq: int, lookup: Lookup, cache: str) -> None:
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out += self._encoder.encode(seq, lookup, cache)  # the cache state goes in the tag

    def _flush(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(bytes(self._out))
        self._out.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_result(None)


async def serve(socks: list[socket.socket], config: Config) -> None:
    """Serve every front process (one socket each) until all of them closed their socket."""
    threads = config.verifier.threads or os.cpu_count() or 2
    from saslauth import schemes

    schemes.set_argon2_limit(config.verifier.argon2_limit)
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(threads, thread_name_prefix="verify") as executor:
        async with AsyncExitStack() as stack:
            chain = build_chain(list(config.passdb), executor)
            await chain.start(stack)
            _start_cache(config, stack)
            dones: list[asyncio.Future[None]] = []
            for sock in socks:
                done: asyncio.Future[None] = loop.create_future()
                transport, _ = await loop.create_connection(
                    partial(ChildProtocol, chain, done), sock=sock
                )
                stack.callback(transport.close)
                dones.append(done)
            log.info(
                "verifier ready (pid %d, uid %d, %d threads, %s)",
                os.getpid(),
                os.getuid(),
                threads,
                loops.name(),
            )
            await asyncio.gather(*dones)


def _start_cache(config: Config, stack: AsyncExitStack) -> None:
    """Install the verification cache, if configured, and flush it on SIGUSR1."""
    if config.cache is None:
        return
    settings = config.cache
    cache = verifycache.VerifyCache(settings.ttl, settings.negative_ttl, settings.size)
    verifycache.install(cache)
    stack.callback(verifycache.install, None)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, _flush_cache, cache)
    stack.callback(loop.remove_signal_handler, signal.SIGUSR1)
    log.info(
        "verification cache on: ttl %gs, negative_ttl %gs, size %d",
        settings.ttl,
        settings.negative_ttl,
        settings.size,
    )


def _flush_cache(cache: verifycache.VerifyCache) -> None:
    users = flush.take_request(os.getppid())
    if users is None:
        count = cache.flush()
        log.info("cache flushed: %d entries (all users)", count)
        return
    count = sum(cache.flush(user) for user in users)
    log.info("cache flushed: %d entries of %d user(s)", count, len(users))


def run_verifier(socks: list[socket.socket], config: Config) -> int:
    """Entry point of the forked verifier child: one socket per front process."""
    logs.setup(config.log_level, "verifier")
    hardening.freeze_startup_objects()
    loops.run(lambda: serve(socks, config), config.event_loop)
    return 0
