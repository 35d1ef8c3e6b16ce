"""The master process of ``saslauth serve``: binds, spawns, supervises.

As root it binds the listeners (so the UNIX socket can be owned by ``postfix``), starts the
verifier child as ``verifier.user`` and ``fronts`` front processes as ``user`` with no
supplementary groups (:mod:`saslauth.fronts`; they all accept on the same listeners and each
has its own socket to the one verifier), then only supervises: when the verifier dies it starts
a new one (with back-off) and hands every front a socket to it over its control channel.  It
never reads client data.

Under systemd it takes the listeners systemd passed (:mod:`saslauth.listeners`), reports to
the service manager (``READY=1`` once every front serves, ``RELOADING=1``, ``STOPPING=1``,
``WATCHDOG=1`` while every front answers ``PING``) and reloads on SIGHUP
(:mod:`saslauth.reloading`).  Control messages are lines: master -> front ``VERIFIER <pid>``
(+1 fd), ``RELOAD <pid>`` (+2 fds), ``PING``; front -> master ``READY``, ``RESTART <pid>`` (its
link to verifier ``pid`` broke), ``PONG``, ``RELOADED <pid>``, ``RELOAD-FAILED <pid>``.
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

from saslauth import buildinfo, reload, systemd
from saslauth.config import Config
from saslauth.fronts import FrontProc, Fronts
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
        self.fronts = Fronts(config.front_count)
        self.verifier: int | None = None
        self._doomed: set[int] = set()  # verifiers killed for a broken link, not yet reaped
        self._backoff = BACKOFF_MIN
        self._verifier_started = 0.0
        self._restart_at: float | None = None
        self._stop_by: float | None = None
        self.exit_code = 0
        self._reload: PendingReload | None = None
        self._reload_again = False
        self._retired: set[int] = set()  # verifiers of earlier configurations, finishing up
        self._watchdog = systemd.watchdog_interval()
        self._next_ping: float | None = None
        self._announced = False  # READY=1 sent once every front was ready

    # ---- children -----------------------------------------------------------------------
    def _start_verifier(self, config: Config) -> tuple[int, list[socket.socket]]:
        """Fork a verifier with one socket per front; returns its pid and the fronts' ends."""
        who = None
        if self.root and config.verifier.user not in ("root", "0"):
            who = account(config.verifier.user, "verifier.user", keep_groups=True)
        pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) for _ in self.fronts.procs]
        ours, theirs = [a for a, _ in pairs], [b for _, b in pairs]
        from saslauth.passdb.registry import preload
        from saslauth.verifier.child import run_verifier

        preload(config.passdb)  # before the privilege drop: later imports may be refused

        pid = fork_child("saslauth-verif", theirs, who, lambda: run_verifier(theirs, config))
        for sock in theirs:
            sock.close()
        self.fronts.born(pid)
        log.info("started verifier (pid %d) for %d front(s)", pid, len(ours))
        return pid, ours

    def _new_verifier(self) -> None:
        """Start a verifier of the running configuration and hand it to every front, with the
        running settings (a front may have taken a failed reload's)."""
        self.verifier, socks = self._start_verifier(self.config)
        self._verifier_started = time.monotonic()
        for front, sock in zip(self.fronts.procs, socks, strict=True):
            settings = reload.settings_fd(self.config)
            message = b"VERIFIER %d\n" % self.verifier
            if self.fronts.send(front, message, settings, sock.fileno()):
                front.link = self.verifier
            os.close(settings)
            sock.close()

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
            self._doomed.discard(pid)
            front = self.fronts.find(pid)
            if pid in self._retired:
                self._retired.discard(pid)
                log.info("verifier of the previous configuration exited (%s)", status_text(code))
            elif self._reload is not None and pid == self._reload.verifier:
                why = f"the new verifier exited ({status_text(code)})"
                self._reload_done(ok=False, why=why, alive=False)
            elif pid == self.verifier and self._reload is not None and code == 0:
                # Every front switched to the new verifier and let the old one go before their
                # RELOADED messages reached us: a hand-over, not a crash (nothing to restart).
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
            elif front is not None:
                self.fronts.exited(front)
                if self._stop_by is None:
                    log.error(
                        "front process %d of %d (pid %d) exited (%s); stopping",
                        front.index + 1, self.fronts.count, pid, status_text(code),
                    )  # fmt: skip
                    self.exit_code = 1
                    self.shutdown()

    def _restart_verifier(self) -> None:
        self._restart_at = None
        if self._stop_by is not None or self.verifier is not None or not self.fronts.running():
            return
        if self._reload is not None:
            return  # the reload's new verifier takes over, or _reload_done restarts this one
        self._new_verifier()

    def _heal(self) -> None:
        """A front left without a verifier while the running one is fine (its link to a retired
        or a failed reload's verifier broke): a fresh verifier for all; the others hand over."""
        if self._stop_by is not None or self._reload is not None or self.verifier is None:
            return
        if self.verifier in self._doomed or self._restart_at is not None:
            return  # the restart after the crash hands every front a verifier
        orphans = self.fronts.orphans()
        if not orphans:
            return
        log.warning(
            "front(s) %s lost their verifier; starting a fresh one for all fronts",
            ", ".join(str(front.index + 1) for front in orphans),
        )
        self._retired.add(self.verifier)
        self._new_verifier()

    def _handle(self, front: FrontProc, word: str, arg: str) -> None:
        if word == "RESTART":
            self._broken_link(front, int(arg) if arg.isdigit() else 0)
        elif word == "READY":
            front.ready = True
            if self.fronts.all_ready() and not self._announced:
                self._announced = True
                count, fronts = len(self.config.listen), self.fronts.count
                log.info("serving: %d front(s) ready; %s", fronts, buildinfo.describe())
                systemd.notify(
                    "READY=1", f"STATUS=serving on {count} listener(s) with {fronts} front(s)"
                )
                if self._watchdog is not None:
                    self._next_ping = time.monotonic()
        elif word == "PONG" and front.ping_due:
            front.ping_due = False
            if not any(other.ping_due for other in self.fronts.procs):
                systemd.notify("WATCHDOG=1")  # every front answered this round's PING
        elif word in ("RELOADED", "RELOAD-FAILED"):
            pid = int(arg) if arg.isdigit() else 0
            if word == "RELOADED":
                self.fronts.adopted(front, pid)  # even a reload given up: its link then drops
            if pid and pid == self._reload_pid():
                self._reload_answer(front, ok=word == "RELOADED")

    def _broken_link(self, front: FrontProc, pid: int) -> None:
        """``front``'s link to verifier ``pid`` broke: that verifier is killed, once.  The front
        is left without one (the crash restart or :meth:`_heal` gives it one)."""
        self.fronts.lost(front, pid)
        if pid == self.verifier and pid not in self._doomed:
            log.warning(
                "front %d reports a broken verifier; killing pid %d", front.index + 1, pid
            )
            self._doomed.add(pid)
            self._kill(pid, signal.SIGKILL)
        elif pid and pid == self._reload_pid():
            log.warning("front %d lost the new verifier; killing pid %d", front.index + 1, pid)
            self._kill(pid, signal.SIGKILL)  # the reload fails when it is reaped

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
        for pid in self.fronts.pids():
            self._kill(pid, signal.SIGTERM)

    def _timeout(self) -> float:
        now = time.monotonic()
        moments = [now + 1.0]
        deadline = self._reload.deadline if self._reload is not None else None
        for moment in (self._restart_at, self._next_ping, deadline):
            if moment is not None:
                moments.append(moment)
        return max(0.0, min(moments) - now)

    def _ping(self, now: float) -> None:
        assert self._watchdog is not None
        self._next_ping = now + self._watchdog
        for front in self.fronts.running():
            front.ping_due = self.fronts.send(front, b"PING\n")

    def _timers(self) -> None:
        now = time.monotonic()
        if self._restart_at is not None and now >= self._restart_at:
            self._restart_verifier()
        if self._next_ping is not None and now >= self._next_ping and self._watchdog:
            self._ping(now)
        if self._reload is not None and now >= self._reload.deadline:
            log.error("the new verifier is not ready after %.0fs", RELOAD_DEADLINE)
            self._kill(self._reload.verifier, signal.SIGKILL)
            self._reload.deadline = now + 5
        if self._stop_by is not None and now > self._stop_by:
            for pid in (*self.fronts.pids(), *self._verifiers()):
                log.error("pid %d did not stop in time; killing it", pid)
                self._kill(pid, signal.SIGKILL)
            self._stop_by = now + 5

    def run(self) -> int:
        no_core_dumps()
        listeners = bind_all(self.config, self.base, systemd.listen_fds())
        if not self.root:
            log.warning(
                "running as uid %d, not root: the fronts and the verifier all run as this "
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
        self.verifier, socks = self._start_verifier(self.config)
        self._verifier_started = time.monotonic()
        who = account(self.config.user, "user", keep_groups=False) if self.root else None
        self.fronts.spawn(self.config, listeners, socks, self.verifier, who)
        while self.fronts.pids() or self._verifiers():
            if self._stop_by is not None and not self.fronts.pids():
                for pid in self._verifiers():
                    self._kill(pid, signal.SIGTERM)
            watch: list[int | socket.socket] = [wake_r, *self.fronts.sockets()]
            readable: list[int | socket.socket] = []
            with contextlib.suppress(InterruptedError):
                readable, _, _ = select.select(watch, [], [], self._timeout())
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
            for front, word, arg in self.fronts.receive(readable):
                self._handle(front, word, arg)
            self._timers()
            self._heal()
        log.info("stopped")
        return self.exit_code
