"""The master's front processes: one record each, forking them, and their control messages.

Every front gets the same listening sockets (shared out evenly: :mod:`saslauth.accept`), its
own control socketpair and its own socket to the verifier.
:meth:`Fronts.receive` gathers the control lines of all of them (fan-in); the master decides.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

from saslauth.accept import Shares
from saslauth.config import Config
from saslauth.front import ListenerInfo
from saslauth.processes import Account, fork_child

log = logging.getLogger("saslauth")


@dataclass(slots=True, eq=False)
class FrontProc:
    """One front process, as the master sees it."""

    index: int
    pid: int | None = None
    control: socket.socket | None = None
    inbox: bytes = b""
    ready: bool = False  # it said READY
    ping_due: bool = False  # it was sent a PING it has not answered yet
    link: int | None = None  # the verifier it uses or was handed last; None: none (RESTART)


GENERATIONS = 64  # verifiers remembered in start order; a report on an older one is stale
# Control lines are a word and a pid; a front (less privileged than the master) that sends a
# longer one is broken or hostile, and is closed before anything parses what it sent.
MAX_CONTROL_LINE = 256


class Fronts:
    def __init__(self, count: int) -> None:
        self.procs = [FrontProc(index) for index in range(count)]
        self._born: dict[int, int] = {}  # verifier pid -> generation (start order)

    # ---- which verifier each front has --------------------------------------------------
    def born(self, verifier: int) -> None:
        """Record a new verifier: newer than every one before."""
        generation = max(self._born.values(), default=0) + 1
        self._born = {p: g for p, g in self._born.items() if g > generation - GENERATIONS}
        self._born[verifier] = generation

    def _age(self, verifier: int | None) -> int:
        return -1 if verifier is None else self._born.get(verifier, -1)

    def adopted(self, front: FrontProc, verifier: int) -> None:
        """``front`` took ``verifier`` over (RELOADED), unless it was handed a newer one since."""
        if self._age(verifier) > self._age(front.link):
            front.link = verifier

    def lost(self, front: FrontProc, verifier: int) -> None:
        """``front``'s link to ``verifier`` broke (RESTART): it has none now, unless it was
        handed a newer verifier since (then the report is stale: that one is on its way)."""
        if front.link is not None and self._age(verifier) >= self._age(front.link):
            front.link = None

    def orphans(self) -> list[FrontProc]:
        """Running fronts without a verifier (and still reachable: never one start per turn)."""
        return [f for f in self.running() if f.link is None and f.control is not None]

    @property
    def count(self) -> int:
        return len(self.procs)

    def running(self) -> list[FrontProc]:
        return [front for front in self.procs if front.pid is not None]

    def pids(self) -> list[int]:
        return [front.pid for front in self.procs if front.pid is not None]

    def find(self, pid: int) -> FrontProc | None:
        return next((front for front in self.procs if front.pid == pid), None)

    def all_ready(self) -> bool:
        return all(front.ready for front in self.procs)

    def spawn(
        self,
        config: Config,
        listeners: list[tuple[socket.socket, ListenerInfo]],
        verifier_socks: list[socket.socket],
        verifier_pid: int,
        who: Account | None,
    ) -> None:
        """Fork every front; closes the verifier sockets and the master's listener copies."""
        from saslauth.front import run_front
        from saslauth.frontprep import preload

        preload(config)  # before the privilege drop: later imports may be refused
        socks = [sock for sock, _ in listeners]
        shares = Shares(self.count)  # mapped before the forks: every front sees the same table
        for front, verifier in zip(self.procs, verifier_socks, strict=True):
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)

            def body(
                index: int = front.index, verifier: socket.socket = verifier,
                control: socket.socket = theirs,
            ) -> int:  # fmt: skip
                return run_front(
                    config, listeners, verifier, control,
                    unprivileged=who is not None, index=index, count=self.count, shares=shares,
                )  # fmt: skip

            front.pid = fork_child("saslauth-front", [*socks, verifier, theirs], who, body)
            theirs.close()
            verifier.close()
            ours.setblocking(False)
            front.control, front.link = ours, verifier_pid
            log.info("started front %d of %d (pid %d)", front.index + 1, self.count, front.pid)
        for sock in socks:
            sock.close()

    def exited(self, front: FrontProc) -> None:
        front.pid = None
        self.close(front)

    def close(self, front: FrontProc) -> None:
        if front.control is not None:
            front.control.close()
            front.control = None

    def send(self, front: FrontProc, message: bytes, *fds: int) -> bool:
        if front.control is None:
            return False
        try:
            socket.send_fds(front.control, [message], list(fds))
        except OSError as exc:  # it is gone or going: its exit is reaped, and stops the daemon
            log.error("cannot reach front %d (pid %s): %s", front.index + 1, front.pid, exc)
            self.close(front)
            return False
        return True

    def sockets(self) -> list[socket.socket]:
        return [front.control for front in self.procs if front.control is not None]

    def receive(self, readable: list[int | socket.socket]) -> list[tuple[FrontProc, str, str]]:
        """The complete control lines waiting on the ``readable`` sockets, as (front, word, arg)."""
        messages = []
        for front in self.procs:
            if front.control is None or front.control not in readable:
                continue
            try:
                data = front.control.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                self.close(front)
                continue
            *lines, front.inbox = (front.inbox + data).split(b"\n")
            if len(front.inbox) > MAX_CONTROL_LINE or any(
                len(line) > MAX_CONTROL_LINE for line in lines
            ):
                log.error(
                    "front %d (pid %s) sent a control line longer than %d bytes; closing it",
                    front.index + 1,
                    front.pid,
                    MAX_CONTROL_LINE,
                )
                self.close(front)
                continue
            for line in lines:
                word, _, arg = line.decode("ascii", "replace").partition(" ")
                messages.append((front, word, arg))
        return messages
