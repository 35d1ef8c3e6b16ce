"""The master process of ``saslauth serve``: binds, spawns, supervises.

As root it binds the listeners (so the UNIX socket can be owned by ``postfix``), starts the
verifier child as ``verifier.user`` and the front process as ``user`` with no supplementary
groups, then only supervises: when the verifier dies it starts a new one (with back-off) and
hands the front a socket to it over the control channel.  It never reads client data.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from saslauth import reload, systemd
from saslauth.config import Config
from saslauth.errors import ConfigError
from saslauth.front import ListenerInfo
from saslauth.listeners import bind_all
from saslauth.logs import set_process_name

log = logging.getLogger("saslauth")

BACKOFF_MIN, BACKOFF_MAX, STABLE_AFTER = 0.1, 5.0, 10.0
STOP_DEADLINE = 15.0
RELOAD_DEADLINE = 30.0  # a new verifier that is not READY by then is given up


@dataclass(slots=True)
class _Reload:
    config: Config
    verifier: int
    deadline: float


@dataclass(frozen=True, slots=True)
class Account:
    uid: int
    gid: int
    groups: tuple[int, ...]


def account(name: str, key: str, *, keep_groups: bool) -> Account:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError([("config", 1, key, f"no such user {name!r}")]) from None
    groups = tuple(os.getgrouplist(name, entry.pw_gid)) if keep_groups else ()
    return Account(entry.pw_uid, entry.pw_gid, groups)


class Master:
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
        self._reload: _Reload | None = None
        self._reload_again = False
        self._retired: set[int] = set()  # verifiers of earlier configurations, finishing up
        self._inbox = b""
        self._watchdog = systemd.watchdog_interval()
        self._next_ping: float | None = None

    # ---- children -----------------------------------------------------------------------
    def _fork(
        self, name: str, keep: list[socket.socket], who: Account | None, body: Callable[[], int]
    ) -> int:
        pid = os.fork()
        if pid:
            return pid
        code = 70
        try:
            for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            keep_fds = {s.fileno() for s in keep} | {0, 1, 2}
            _close_except(keep_fds)
            set_process_name(name)
            if who is not None:
                drop_privileges(who)
            code = body()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
            if not isinstance(exc.code, int | None):
                print(exc.code, file=sys.stderr)
        except BaseException:
            log.exception("%s crashed", name)
        finally:
            logging.shutdown()
            os._exit(code)
        raise AssertionError("unreachable")

    def _start_verifier(self, config: Config) -> tuple[int, socket.socket]:
        who = None
        if self.root and config.verifier.user not in ("root", "0"):
            who = account(config.verifier.user, "verifier.user", keep_groups=True)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        from saslauth.verifier.child import run_verifier

        pid = self._fork("saslauth-verif", [theirs], who, lambda: run_verifier(theirs, config))
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
        from saslauth.front import run_front

        config = self.config
        socks = [sock for sock, _ in listeners]
        infos = [info for _, info in listeners]
        self.front = self._fork(
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
                log.info("verifier of the previous configuration exited (%s)", _status(code))
            elif self._reload is not None and pid == self._reload.verifier:
                why = f"the new verifier exited ({_status(code)})"
                self._reload_done(ok=False, why=why, alive=False)
            elif pid == self.verifier:
                self.verifier = None
                if self._stop_by is None:
                    if time.monotonic() - self._verifier_started > STABLE_AFTER:
                        self._backoff = BACKOFF_MIN
                    log.error(
                        "verifier exited (%s); restarting in %.1fs", _status(code), self._backoff
                    )
                    self._restart_at = time.monotonic() + self._backoff
                    self._backoff = min(self._backoff * 2, BACKOFF_MAX)
            elif pid == self.front:
                self.front = None
                if self._stop_by is None:
                    log.error("front process exited (%s); stopping", _status(code))
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

    def _reload_pid(self) -> int | None:
        return self._reload.verifier if self._reload is not None else None

    # ---- reload -------------------------------------------------------------------------
    def reload(self) -> None:
        """SIGHUP: re-read the file; a bad one changes nothing and the old one keeps serving."""
        if self._reload is not None:
            self._reload_again = True
            return
        if self._loader is None or self._stop_by is not None:
            return
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        systemd.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")
        log.info("SIGHUP: reloading the configuration")
        try:
            fresh = self._loader()
            config, notes = reload.merge(self.config, fresh)
            pid, sock = self._start_verifier(config)
        except (ConfigError, OSError) as exc:
            text = exc.render() if isinstance(exc, ConfigError) else str(exc)
            for line in text.splitlines():
                log.error("reload failed: %s", line)
            self._reload_failed()
            return
        for note in notes:
            log.warning("reload: %s", note)
        self._reload = _Reload(config, pid, time.monotonic() + RELOAD_DEADLINE)
        settings = reload.settings_fd(config)
        try:
            sent = self._send(b"RELOAD %d\n" % pid, settings, sock.fileno())
        finally:
            os.close(settings)
            sock.close()
        if not sent:
            self._kill(pid, signal.SIGKILL)

    def _reload_done(self, *, ok: bool, why: str, alive: bool = True) -> None:
        assert self._reload is not None
        pending, self._reload = self._reload, None
        if ok:
            if self.verifier is not None:
                self._retired.add(self.verifier)
            self.verifier = pending.verifier
            self._verifier_started = time.monotonic()
            self._backoff = BACKOFF_MIN
            self._restart_at = None
            self.config = pending.config
            logging.getLogger().setLevel(pending.config.log_level.upper())
            log.info("reloaded the configuration (verifier pid %d)", pending.verifier)
            systemd.notify("READY=1", "STATUS=reloaded the configuration")
        else:
            if alive:
                self._retired.add(pending.verifier)
                self._kill(pending.verifier, signal.SIGKILL)
            log.error("reload failed: %s", why)
            self._reload_failed()
            if self.verifier is None:
                self._restart_at = time.monotonic()
        if self._reload_again:
            self._reload_again = False
            self.reload()

    def _reload_failed(self) -> None:
        log.error("reload failed: still serving the previous configuration")
        systemd.notify("READY=1", "STATUS=reload failed; serving the previous configuration")

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
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
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
            self._reap()
            if self._control is not None:
                self._control_message()
            self._timers()
        log.info("stopped")
        return self.exit_code


def drop_privileges(who: Account) -> None:
    """setgroups, setgid, setuid — in that order, or the later calls would be refused."""
    os.setgroups(list(who.groups))
    os.setgid(who.gid)
    os.setuid(who.uid)


def _close_except(keep: set[int]) -> None:
    for fd in sorted(int(name) for name in os.listdir("/proc/self/fd")):
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _status(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"
