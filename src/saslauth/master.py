"""The master process of ``saslauth serve``: binds, spawns, supervises.

As root it binds the listeners (so the UNIX socket can be owned by ``postfix``), starts the
verifier child as ``verifier.user`` and the front process as ``user`` with no supplementary
groups, then only supervises: when the verifier dies it starts a new one (with back-off) and
hands the front a socket to it over the control channel.  It never reads client data.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import select
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from saslauth.config import Config, TcpListener, UnixListener
from saslauth.errors import ConfigError
from saslauth.front import ListenerInfo
from saslauth.logs import set_process_name

log = logging.getLogger("saslauth")

BACKOFF_MIN, BACKOFF_MAX, STABLE_AFTER = 0.1, 5.0, 10.0
STOP_DEADLINE = 15.0


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


def _unix_listener(item: UnixListener, base: Path) -> socket.socket:
    path = (base / item.path) if not os.path.isabs(item.path) else Path(item.path)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise OSError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # a stale socket from an earlier run
        else:
            raise OSError(f"{path}: another server is listening there")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    uid = pwd.getpwnam(item.user).pw_uid if item.user else -1
    gid = grp.getgrnam(item.group).gr_gid if item.group else -1
    if (uid, gid) != (-1, -1):
        os.chown(path, uid, gid)
    os.chmod(path, item.mode_bits)
    sock.listen(1024)
    return sock


def _tcp_listener(item: TcpListener) -> socket.socket:
    host, port = item.host_port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    import ipaddress

    if not ipaddress.ip_address(host).is_loopback:
        log.warning(
            "TCP listener %s is not on loopback: Postfix talks to it without TLS, so only "
            "the allow list (%s) protects it",
            item.address,
            ", ".join(map(str, item.allow)),
        )
    return sock


def bind_all(config: Config, base: Path) -> list[tuple[socket.socket, ListenerInfo]]:
    bound = []
    for item in config.listen:
        if isinstance(item, UnixListener):
            bound.append((_unix_listener(item, base), ListenerInfo(item.name or item.path, None)))
        else:
            info = ListenerInfo(item.name or item.address, item.allow)
            bound.append((_tcp_listener(item), info))
    return bound


class Master:
    """A synchronous supervisor: no event loop, so forking the children is clean."""

    def __init__(self, config: Config, base: Path) -> None:
        self.config = config
        self.base = base
        self.root = os.geteuid() == 0
        self.front: int | None = None
        self.verifier: int | None = None
        self._control: socket.socket | None = None
        self._backoff = BACKOFF_MIN
        self._verifier_started = 0.0
        self._restart_at: float | None = None
        self._stop_by: float | None = None
        self.exit_code = 0

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
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # the verifier installs its own
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

    def spawn_verifier(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        who = None
        if self.root and self.config.verifier.user not in ("root", "0"):
            who = account(self.config.verifier.user, "verifier.user", keep_groups=True)
        from saslauth.verifier.child import run_verifier

        config = self.config
        self.verifier = self._fork(
            "saslauth-verif", [theirs], who, lambda: run_verifier(theirs, config)
        )
        theirs.close()
        self._verifier_started = time.monotonic()
        log.info("started verifier (pid %d)", self.verifier)
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
            if pid == self.verifier:
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
        sock = self.spawn_verifier()
        try:
            socket.send_fds(self._control, [b"VERIFIER\n"], [sock.fileno()])
        except OSError as exc:
            log.error("cannot hand the new verifier to the front: %s", exc)
        sock.close()

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
        if b"RESTART" in data and self.verifier is not None:
            log.warning("front reports a broken verifier; killing pid %d", self.verifier)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.verifier, signal.SIGKILL)

    def shutdown(self) -> None:
        if self._stop_by is not None:
            return
        log.info("stopping")
        self._stop_by = time.monotonic() + STOP_DEADLINE
        if self.front is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.front, signal.SIGTERM)

    def run(self) -> int:
        listeners = bind_all(self.config, self.base)
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
        while self.front is not None or self.verifier is not None:
            if self._stop_by is not None and self.front is None and self.verifier is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.verifier, signal.SIGTERM)
            timeout = 1.0
            if self._restart_at is not None:
                timeout = max(0.0, min(timeout, self._restart_at - time.monotonic()))
            watch = [wake_r] + ([self._control] if self._control is not None else [])
            with contextlib.suppress(InterruptedError):
                select.select(watch, [], [], timeout)
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 512)
            while signals:
                received = signals.pop(0)
                if received in (signal.SIGTERM, signal.SIGINT):
                    self.shutdown()
                elif received == signal.SIGHUP:
                    log.info("SIGHUP: reload is not supported yet")
                elif received == signal.SIGUSR1 and self.verifier is not None:
                    os.kill(self.verifier, signal.SIGUSR1)  # flush the verification cache
            self._reap()
            if self._control is not None:
                self._control_message()
            if self._restart_at is not None and time.monotonic() >= self._restart_at:
                self._restart_verifier()
            if self._stop_by is not None and time.monotonic() > self._stop_by:
                for pid in (self.front, self.verifier):
                    if pid is not None:
                        log.error("pid %d did not stop in time; killing it", pid)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                self._stop_by = time.monotonic() + 5
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
