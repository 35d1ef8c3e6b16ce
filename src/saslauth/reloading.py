"""The master's side of a SIGHUP reload (see :mod:`saslauth.reload` for what changes).

A good new file starts a verifier child with the new configuration (one socket per front) and
sends it to every front (``RELOAD <pid>``, with a settings memfd and that front's verifier
socket).  A front answers ``RELOADED <pid>`` once that verifier said READY and took over, or
``RELOAD-FAILED <pid>``; once every front answered RELOADED the new configuration counts as
running, and the previous verifier is "retired": it exits by itself after answering what it
was sent.  A bad file, a RELOAD-FAILED, a verifier that dies or is not READY within
:data:`RELOAD_DEADLINE` fail the reload: the new verifier is killed and the previous
configuration keeps serving.  Fronts that had already switched lose their link and report it
(``RESTART``); the master then starts a fresh verifier of the running configuration for all
fronts (``Master._heal``), the others handing over to it without losing a request.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from saslauth import reload, systemd
from saslauth.config import Config
from saslauth.errors import ConfigError
from saslauth.fronts import FrontProc, Fronts

log = logging.getLogger("saslauth")

RELOAD_DEADLINE = 30.0  # a new verifier that is not READY by then is given up
BACKOFF_MIN = 0.1  # the master's first restart delay; a fresh verifier starts over with it


@dataclass(slots=True)
class PendingReload:
    config: Config
    verifier: int
    deadline: float
    answered: set[int] = field(default_factory=set)  # the fronts (index) that said RELOADED


class ReloadMixin:
    """Reload handling for :class:`saslauth.master.Master` (which provides these members)."""

    config: Config
    verifier: int | None
    _loader: Callable[[], Config] | None
    _stop_by: float | None
    _reload: PendingReload | None
    _reload_again: bool
    _retired: set[int]
    _verifier_started: float
    _backoff: float
    _restart_at: float | None
    fronts: Fronts

    def _start_verifier(self, config: Config) -> tuple[int, list[socket.socket]]:
        raise NotImplementedError

    def _kill(self, pid: int | None, signum: int) -> None:
        raise NotImplementedError

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
        settings: list[int] = []
        try:
            config, notes = reload.merge(self.config, self._loader())
            # one memfd each: the fronts read them at once, and a shared one has one offset
            settings = [reload.settings_fd(config) for _ in self.fronts.procs]
            pid, socks = self._start_verifier(config)
        except (ConfigError, OSError) as exc:
            for fd in settings:
                os.close(fd)
            text = exc.render() if isinstance(exc, ConfigError) else str(exc)
            for line in text.splitlines():
                log.error("reload failed: %s", line)
            self._reload_failed()
            return
        for note in notes:
            log.warning("reload: %s", note)
        self._reload = PendingReload(config, pid, time.monotonic() + RELOAD_DEADLINE)
        sent = True
        for front, fd, sock in zip(self.fronts.procs, settings, socks, strict=True):
            try:
                sent = self.fronts.send(front, b"RELOAD %d\n" % pid, fd, sock.fileno()) and sent
            finally:
                os.close(fd)
                sock.close()
        if not sent:
            self._kill(pid, signal.SIGKILL)  # the reload fails when it is reaped

    def _reload_answer(self, front: FrontProc, *, ok: bool) -> None:
        assert self._reload is not None
        if not ok:
            why = f"front {front.index + 1} could not take the new verifier"
            self._reload_done(ok=False, why=why)
            return
        self._reload.answered.add(front.index)
        if len(self._reload.answered) == self.fronts.count:
            self._reload_done(ok=True, why="")

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

