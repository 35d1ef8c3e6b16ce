"""Accepting clients on the listening sockets that the front processes share, evenly.

asyncio's (and uvloop's) server takes every pending connection each time its socket is
readable, so a burst of clients (Postfix starting its smtpd processes, a benchmark's 50
connections) lands on whichever front ran first, which then serves them all while the others
idle.  Here every front publishes how many connections it holds in :class:`Shares`, a small
table in memory that the master maps before forking the fronts, and an :class:`Acceptor` takes
a connection only while its front holds no more than the least loaded other front (plus
:data:`SLACK`); otherwise it stops watching the socket for :data:`DEFER` seconds so that the
others can take it.  A front never waits longer than :data:`MAX_DEFER` for the others: past
that it takes what is pending, so a busy or stuck front cannot hold up new clients.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import mmap
import socket
import struct
from collections.abc import Callable

log = logging.getLogger("saslauth.front")

LISTEN_BACKLOG = 1024  # the same as the master's listen(); the kernel caps it at somaxconn
SLACK = 1  # connections a front may hold above the least loaded other front
DEFER = 0.002  # how long an over-share front leaves a pending connection to the others
MAX_DEFER = 0.05  # ... at most, in all: then it takes what is pending
RETRY_AFTER = 1.0  # out of descriptors: pause accepting this long (as asyncio does)
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_SLOT = struct.Struct("=q")


class Shares:
    """Connections held by each of ``count`` fronts, in shared anonymous memory.

    Made by the master before it forks the fronts, which all see the same pages.  Each front
    writes only its own slot; a racy read of another's is fine (it only steers accepting).
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self._memory = mmap.mmap(-1, _SLOT.size * count)  # MAP_SHARED | MAP_ANONYMOUS

    def set(self, index: int, value: int) -> None:
        _SLOT.pack_into(self._memory, _SLOT.size * index, value)

    def get(self, index: int) -> int:
        return int(_SLOT.unpack_from(self._memory, _SLOT.size * index)[0])

    def fewest_besides(self, index: int) -> int:
        return min(self.get(i) for i in range(self.count) if i != index)


class Balance:
    """One front's count of the connections it holds, published in :class:`Shares`."""

    def __init__(self, shares: Shares | None = None, index: int = 0) -> None:
        self._shares = shares if shares is not None and shares.count > 1 else None
        self._index = index
        self.held = 0

    def take(self) -> None:
        self.held += 1
        if self._shares is not None:
            self._shares.set(self._index, self.held)

    def release(self) -> None:
        self.held -= 1
        if self._shares is not None:
            self._shares.set(self._index, self.held)

    def over_share(self) -> bool:
        shares = self._shares
        return shares is not None and self.held > shares.fewest_besides(self._index) + SLACK


class Acceptor:
    """Accepts connections on ``sock`` for this front and hands each to a new protocol."""

    def __init__(
        self, sock: socket.socket, factory: Callable[[], asyncio.Protocol], balance: Balance
    ) -> None:
        self._sock = sock
        self._factory = factory
        self._balance = balance
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[object]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._deferred_since: float | None = None
        # a socket passed by systemd keeps its Backlog= unless raised here, as asyncio did
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._ready)

    def close(self) -> None:
        """Stop accepting (the socket itself stays open: the master and systemd own it)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._loop.remove_reader(self._sock.fileno())

    def _pause(self, delay: float) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._timer = self._loop.call_later(delay, self._resume)

    def _resume(self) -> None:
        self._timer = None
        self._loop.add_reader(self._sock.fileno(), self._ready)

    def _ready(self) -> None:
        if not self._balance.over_share():
            self._deferred_since = None
        else:
            now = self._loop.time()
            if self._deferred_since is None:
                self._deferred_since = now
            if now - self._deferred_since < MAX_DEFER:
                self._pause(DEFER)
                return
            # waited long enough: take what is pending, until nothing is (then start over)
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            self._deferred_since = None  # nothing pending (another front took it)
            return
        except OSError as exc:
            if exc.errno not in _EXHAUSTED:
                raise
            log.error("cannot accept a connection: %s; trying again in %.0fs", exc, RETRY_AFTER)
            self._pause(RETRY_AFTER)
            return
        self._balance.take()
        conn.setblocking(False)
        task = self._loop.create_task(self._connect(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn)
        except OSError as exc:  # the client went away before its transport was made
            log.debug("accepted connection lost at once: %s", exc)
            conn.close()
            self._balance.release()
