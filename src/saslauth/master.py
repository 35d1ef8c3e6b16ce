"""The master process of ``saslauth serve``: binds, spawns, supervises.

As root it binds the listeners (so the UNIX socket can be owned by ``postfix``), starts the
verifier child as ``verifier.user`` and the front process as ``user`` with no supplementary
groups, then only supervises: when the verifier dies it starts a new one (with back-off) and
hands the front a socket to it over the control channel.  It never reads client data.

Under systemd it takes the listeners systemd passed (:mod:`saslauth.listeners`), reports to
the service manager (``READY=1`` once the front serves, ``RELOADING=1``, ``STOPPING=1``,
``WATCHDOG=1`` while the front answers ``PING``) and reloads on SIGHUP
(:mod:`saslauth.reloading`).  Control messages are lines: master -> front ``VERIFIER`` (+1 fd),
``RELOAD <pid>`` (+2 fds), ``PING``; front -> master ``READY``, ``RESTART``, ``PONG``,
``RELOADED <pid>``, ``RELOAD-FAILED <pid>``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from saslauth import systemd
from saslauth.config import Config
from saslauth.front import ListenerInfo
from saslauth.hardening import no_core_dumps
from saslauth.listeners import bind_all
from saslauth.processes import account, fork_child, status_text
from saslauth.reloading import BACKOFF_MIN, RELOAD_DEADLINE, PendingReload, ReloadMixin

log = logging.getLogger("saslauth")

BACKOFF_MAX, STABLE_AFTER = 5.0, 10.0
STOP_DEADLINE = 15.0


class Master(ReloadMixin):
    """A synchronous supervisor: no event loop, so forking the children is clean."""

    def __init__(
        self, config: Config, base: Path, loader: Callable[[], Config] | None = None
    ) -> None:
        self.config = config
        self.base = base
        self._loader = loader  # re-reads the configuration file on SIGHUP
        self.root = os.geteuid() == 0
        self.front: int | None = None
        self.verifier: int | None = None
        self._control: socket.socket | None = None
        self._backoff = BACKOFF_MIN
        self._verifier_started = 0.0
        self._restart_at: float | None = None
        self._stop_by: float | None = None
        self.exit_code = 0
        self._reload: PendingReload | None = None
        self._reload_again = False
        self._retired: set[int] = set()  # verifiers of earlier configurations, finishing up
        self._inbox = b""
        self._watchdog = systemd.watchdog_interval()
        self._next_ping: float | None = None

    # ---- children -----------------------------------------------------------------------
    def _start_verifier(self, config: Config) -> tuple[int, socket.socket]:
        who = None
        if self.root and config.verifier.user not in ("root", "0"):
            who = account(config.verifier.user, "verifier.user", keep_groups=True)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        from saslauth.passdb.registry import preload
        from saslauth.verifier.child import run_verifier

        preload(config.passdb)  # before the privilege drop: later imports may be refused

        pid = fork_child("saslauth-verif", [theirs], who, lambda: run_verifier(theirs, config))
        theirs.close()
        log.info("started verifier (pid %d)", pid)
        return pid, ours

    def spawn_verifier(self) -> socket.socket:
        self.verifier, ours = self._start_verifier(self.config)
        self._verifier_started = time.monotonic()
        return ours

    def spawn_front(
        self, listeners: list[tuple[socket.socket, ListenerInfo]], verifier: socket.socket
    ) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._control = ours
        who = account(self.config.user, "user", keep_groups=False) if self.root else None
        from saslauth.front import preload, run_front

        preload(self.config)  # before the privilege drop: later imports may be refused

        config = self.config
        socks = [sock for sock, _ in listeners]
        infos = [info for _, info in listeners]
        self.front = fork_child(
            "saslauth-front",
            [*socks, verifier, theirs],
            who,
            lambda: run_front(
                config,
                list(zip(socks, infos, strict=True)),
                verifier,
                theirs,
                unprivileged=who is not None,
            ),
        )
        theirs.close()
        verifier.close()
        for sock in socks:
            sock.close()
        log.info("started front (pid %d)", self.front)

    # ---- supervision --------------------------------------------------------------------
    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            if pid in self._retired:
                self._retired.discard(pid)
                log.info("verifier of the previous configuration exited (%s)", status_text(code))
            elif self._reload is not None and pid == self._reload.verifier:
                why = f"the new verifier exited ({status_text(code)})"
                self._reload_done(ok=False, why=why, alive=False)
            elif pid == self.verifier and self._reload is not None and code == 0:
                # The front switched to the new verifier and let the old one go before its
                # RELOADED message reached us: a hand-over, not a crash (nothing to restart).
                self.verifier = None
                log.info("verifier of the previous configuration exited (%s)", status_text(code))
            elif pid == self.verifier:
                self.verifier = None
                if self._stop_by is None:
                    if time.monotonic() - self._verifier_started > STABLE_AFTER:
                        self._backoff = BACKOFF_MIN
                    log.error(
                        "verifier exited (%s); restarting in %.1fs",
                        status_text(code), self._backoff,
                    )  # fmt: skip
                    self._restart_at = time.monotonic() + self._backoff
                    self._backoff = min(self._backoff * 2, BACKOFF_MAX)
            elif pid == self.front:
                self.front = None
                if self._stop_by is None:
                    log.error("front process exited (%s); stopping", status_text(code))
                    self.exit_code = 1
                    self.shutdown()

    def _restart_verifier(self) -> None:
        self._restart_at = None
        if self._stop_by is not None or self.verifier is not None or self._control is None:
            return
        if self._reload is not None:
            return  # the reload's new verifier takes over, or _reload_done restarts this one
        sock = self.spawn_verifier()
        self._send(b"VERIFIER\n", sock.fileno())
        sock.close()

    def _send(self, message: bytes, *fds: int) -> bool:
        if self._control is None:
            return False
        try:
            socket.send_fds(self._control, [message], list(fds))
        except OSError as exc:
            log.error("cannot reach the front process: %s", exc)
            return False
        return True

    def _control_message(self) -> None:
        assert self._control is not None
        try:
            data = self._control.recv(1024)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._control.close()
            self._control = None
            return
        *lines, self._inbox = (self._inbox + data).split(b"\n")
        for line in lines:
            word, _, arg = line.decode("ascii", "replace").partition(" ")
            self._handle(word, arg)

    def _handle(self, word: str, arg: str) -> None:
        if word == "RESTART" and self.verifier is not None:
            log.warning("front reports a broken verifier; killing pid %d", self.verifier)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.verifier, signal.SIGKILL)
        elif word == "READY":
            count = len(self.config.listen)
            systemd.notify("READY=1", f"STATUS=serving on {count} listener(s)")
            if self._watchdog is not None:
                self._next_ping = time.monotonic()
        elif word == "PONG":
            systemd.notify("WATCHDOG=1")
        elif word in ("RELOADED", "RELOAD-FAILED") and arg == str(self._reload_pid()):
            self._reload_done(ok=word == "RELOADED", why="the new verifier did not start")

    # ---- lifetime -----------------------------------------------------------------------
    def _kill(self, pid: int | None, signum: int) -> None:
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _verifiers(self) -> list[int]:
        extra = [self._reload.verifier] if self._reload is not None else []
        return [pid for pid in (self.verifier, *extra, *self._retired) if pid is not None]

    def shutdown(self) -> None:
        if self._stop_by is not None:
            return
        log.info("stopping")
        systemd.notify("STOPPING=1", "STATUS=stopping: finishing requests in flight")
        self._stop_by = time.monotonic() + STOP_DEADLINE
        self._kill(self.front, signal.SIGTERM)

    def _timeout(self) -> float:
        now = time.monotonic()
        moments = [now + 1.0]
        deadline = self._reload.deadline if self._reload is not None else None
        for moment in (self._restart_at, self._next_ping, deadline):
            if moment is not None:
                moments.append(moment)
        return max(0.0, min(moments) - now)

    def _timers(self) -> None:
        now = time.monotonic()
        if self._restart_at is not None and now >= self._restart_at:
            self._restart_verifier()
        if self._next_ping is not None and now >= self._next_ping and self._watchdog:
            self._send(b"PING\n")
            self._next_ping = now + self._watchdog
        if self._reload is not None and now >= self._reload.deadline:
            log.error("the new verifier is not ready after %.0fs", RELOAD_DEADLINE)
            self._kill(self._reload.verifier, signal.SIGKILL)
            self._reload.deadline = now + 5
        if self._stop_by is not None and now > self._stop_by:
            for pid in (self.front, *self._verifiers()):
                if pid is not None:
                    log.error("pid %d did not stop in time; killing it", pid)
                    self._kill(pid, signal.SIGKILL)
            self._stop_by = now + 5

    def run(self) -> int:
        no_core_dumps()
        listeners = bind_all(self.config, self.base, systemd.listen_fds())
        if not self.root:
            log.warning(
                "running as uid %d, not root: the front and the verifier both run as this "
                "user (no privilege separation; fine for development)",
                os.getuid(),
            )
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signals: list[int] = []
        handled = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
        for signum in handled:
            signal.signal(signum, lambda n, _f: signals.append(n))
        signal.set_wakeup_fd(wake_w)
        verifier = self.spawn_verifier()
        self.spawn_front(listeners, verifier)
        assert self._control is not None
        self._control.setblocking(False)
        while self.front is not None or self._verifiers():
            if self._stop_by is not None and self.front is None:
                for pid in self._verifiers():
                    self._kill(pid, signal.SIGTERM)
            watch = [wake_r] + ([self._control] if self._control is not None else [])
            with contextlib.suppress(InterruptedError):
                select.select(watch, [], [], self._timeout())
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 512)
            while signals:
                received = signals.pop(0)
                if received in (signal.SIGTERM, signal.SIGINT):
                    self.shutdown()
                elif received == signal.SIGHUP:
                    self.reload()
                elif received == signal.SIGUSR1 and self.verifier is not None:
                    os.kill(self.verifier, signal.SIGUSR1)  # flush the verification cache
            self._reap()
            if self._control is not None:
                self._control_message()
            self._timers()
        log.info("stopped")
        return self.exit_code



