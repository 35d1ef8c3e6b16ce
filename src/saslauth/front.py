"""The network-facing process: accepts clients and speaks the Dovecot protocol.

Started by the master as ``python -m saslauth.front`` with its listening sockets, a socket to
the verifier child and a control socket already open, and its settings (plain JSON) on stdin.
When the master ran as root, this process was started as the unprivileged ``user`` with no
supplementary groups, and it refuses to run if it could become root again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import secrets
import signal
import socket
from collections.abc import Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any

from saslauth import affinity, hardening, logbatch, logs, loops, reload
from saslauth.accept import Acceptor, Balance, Shares
from saslauth.config import Config
from saslauth.frontprep import (
    check_unprivileged,
    lean_logging,
    raise_nofile_limit,
    session_settings,
)
from saslauth.session import Session
from saslauth.sessionsettings import SessionSettings
from saslauth.verifier.client import Send, VerifierClient

log = logging.getLogger("saslauth.front")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
DRAIN_DEADLINE = 10.0
RELOAD_WAIT = 30.0  # how long a reload waits for the new verifier to say READY


@dataclass(frozen=True, slots=True)
class ListenerInfo:
    label: str
    allow: tuple[Network, ...] | None  # None: UNIX socket, filesystem permissions decide


def _allowed(peer: Any, allow: tuple[Network, ...]) -> bool:
    if not isinstance(peer, tuple) or not peer:
        return False
    try:
        address = ipaddress.ip_address(peer[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in net for net in allow)


class Front:
    def __init__(
        self, config: Config, index: int = 0, count: int = 1, shares: Shares | None = None
    ) -> None:
        """Front ``index`` of ``count``: its CUIDs are index+1, index+1+count, ... (unique
        across the fronts, as Dovecot's are across its auth processes)."""
        self.config = config
        self.index, self.count = index, count
        self.settings = session_settings(config)
        self._jobs: set[asyncio.Future[object]] = set()
        self.verifier = VerifierClient(on_broken=self._verifier_broken)
        self.sessions: set[Session] = set()
        self._cuid = index + 1 - count
        self.balance = Balance(shares, index)  # connections held, next to the other fronts'
        self._handed = 0  # VERIFIER and RELOAD messages so far
        self._control: socket.socket | None = None
        self.stop = asyncio.Event()
        self._drained = asyncio.Event()

    def session_factory(self, listener: ListenerInfo) -> Session:
        self._cuid += self.count
        session = _ListenerSession(
            self.settings, self.verifier.send, self._cuid, secrets.token_hex(16), listener
        )
        self.sessions.add(session)
        session.on_close = self._closed
        if self.stop.is_set():
            session.on_idle = self._session_idle
        return session

    def _closed(self, session: Session) -> None:
        self.sessions.discard(session)
        self.balance.release()

    def _session_idle(self) -> None:
        if self.stop.is_set() and not any(s.pending for s in self.sessions):
            self._drained.set()

    def _verifier_broken(self) -> None:
        # with the broken verifier's pid: the master then never kills a newer one for it
        self._tell(b"RESTART %d" % self.verifier.pid)

    def _control_readable(self) -> None:
        assert self._control is not None
        try:
            message, fds, _flags, _addr = socket.recv_fds(self._control, 1024, 4)
        except OSError:
            message, fds = b"", []
        if not message:
            log.error("master process went away; stopping")
            asyncio.get_running_loop().remove_reader(self._control.fileno())
            self.stop.set()
            return
        for line in message.splitlines():  # VERIFIER <pid> (1-2 fds), RELOAD <pid> (2), PING
            word, _, arg = line.partition(b" ")
            if word == b"VERIFIER" and fds:
                self._handed += 1
                if len(fds) >= 2:  # the running configuration's settings come along
                    self._restore(fds.pop(0))
                self._spawn(self.verifier.attach(socket.socket(fileno=fds.pop(0))))
            elif word == b"RELOAD" and len(fds) >= 2:
                self._handed += 1
                settings, sock = fds.pop(0), socket.socket(fileno=fds.pop(0))
                self._spawn(self._reload(arg, settings, sock, self._handed))
            elif word == b"PING":
                self._tell(b"PONG")
        for fd in fds:
            os.close(fd)

    def _tell(self, message: bytes) -> None:
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.send(message + b"\n")

    def _spawn(self, job: Coroutine[Any, Any, object]) -> None:
        task = asyncio.ensure_future(job)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)
        task.add_done_callback(_log_failure)

    def _load(self, settings_fd: int) -> tuple[Config, SessionSettings]:
        """The settings the master sent (a memfd), applied to ours; raises if they do not fit."""
        config = reload.read_settings(settings_fd).apply(self.config)
        return config, session_settings(config)

    def _adopt(self, config: Config, settings: SessionSettings) -> None:
        self.config, self.settings = config, settings
        logging.getLogger().setLevel(config.log_level.upper())

    def _restore(self, settings_fd: int) -> None:
        """Settings the master sends with a verifier after a failed reload: its running ones."""
        try:
            self._adopt(*self._load(settings_fd))
        except Exception as exc:
            log.error("cannot apply the running settings: %s", exc)

    async def _reload(self, pid: bytes, settings_fd: int, sock: socket.socket, handed: int) -> None:
        """Take over a new verifier, then greet new connections with the new settings (unless
        the master handed a verifier since: that one's settings hold)."""
        try:
            config, settings = self._load(settings_fd)  # before the hand-over: it may fail
        except Exception as exc:  # whatever it is, the running configuration stays
            log.error("reload: cannot apply the new settings: %s", exc)
            sock.close()
            self._tell(b"RELOAD-FAILED " + pid)
            return
        try:
            async with asyncio.timeout(RELOAD_WAIT):
                took_over = await self.verifier.replace(sock)
        except TimeoutError:
            took_over = False
        if not took_over:
            self._tell(b"RELOAD-FAILED " + pid)
            return
        if handed == self._handed:
            self._adopt(config, settings)
        self._tell(b"RELOADED " + pid)

    async def run(
        self,
        listen: list[tuple[socket.socket, ListenerInfo]],
        verifier: socket.socket,
        control: socket.socket,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._control = control
        control.setblocking(False)
        loop.add_reader(control.fileno(), self._control_readable)
        await self.verifier.attach(verifier)
        acceptors = [
            Acceptor(sock, partial(self.session_factory, info), self.balance)
            for sock, info in listen
        ]
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: None)  # the master handles reloads
        log.info(
            "front ready (%d of %d, pid %d, uid %d, gid %d, %s)",
            self.index + 1,
            self.count,
            os.getpid(),
            os.getuid(),
            os.getgid(),
            loops.name(),
        )
        self._tell(b"READY")
        await self.stop.wait()
        log.info("stopping: no new connections; finishing requests in flight")
        for acceptor in acceptors:
            acceptor.close()
        for session in self.sessions:  # only now: while serving, a request's end costs no call
            session.on_idle = self._session_idle
        await self._drain()
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.close()
        self.verifier.close()

    async def _drain(self) -> None:
        if not any(s.pending for s in self.sessions):
            return
        try:
            async with asyncio.timeout(DRAIN_DEADLINE):
                await self._drained.wait()
        except TimeoutError:
            log.warning("requests still in flight after %.0fs; closing anyway", DRAIN_DEADLINE)


def _log_failure(task: asyncio.Future[object]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("control request failed: %s", task.exception())


class _ListenerSession(Session):
    def __init__(
        self,
        settings: SessionSettings,
        send: Send,
        cuid: int,
        cookie: str,
        listener: ListenerInfo,
    ) -> None:
        super().__init__(settings, send, cuid, cookie)
        self.listener = listener
        self.on_close: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        if self.listener.allow is not None:
            self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
            if not _allowed(peer, self.listener.allow):
                log.warning(
                    "refused connection from %s on %s: not in allow", self.peer, self.listener.label
                )
                transport.close()
                return
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.on_close is not None:
            self.on_close(self)


def run_front(
    config: Config,
    listeners: list[tuple[socket.socket, ListenerInfo]],
    verifier: socket.socket,
    control: socket.socket,
    *,
    unprivileged: bool,
    index: int = 0,
    count: int = 1,
    shares: Shares | None = None,
) -> int:
    """Entry point of the forked front process."""
    logs.setup(config.log_level, "front")
    watcher = affinity.pin(config.pin_fronts, index, count)
    if unprivileged:
        check_unprivileged()
    raise_nofile_limit()
    lean_logging()
    streams = logbatch.install()
    front = Front(config, index, count, shares)
    hardening.freeze_startup_objects()
    try:
        loops.run(
            lambda: affinity.watching(watcher, front.run(listeners, verifier, control)),
            config.event_loop,
        )
    finally:
        logbatch.drain(streams)
    return 0
