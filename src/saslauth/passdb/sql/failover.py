"""What every SQL backend offers the driver, and host failover for the networked ones.

A backend's ``fetch(args)`` runs the one configured query with bound arguments and returns at
most a few rows as ``((column, value), ...)``; an outage or timeout raises BackendError.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from saslauth.errors import BackendError

if TYPE_CHECKING:
    from saslauth.passdb.sql.settings import Target

log = logging.getLogger("saslauth.passdb")

Row = tuple[tuple[str, object], ...]
PasswordSource = Callable[[], str]


class Backend(Protocol):
    async def fetch(self, args: tuple[str, ...]) -> list[Row]: ...

    async def close(self) -> None: ...


class ConnectError(BackendError):
    """This host cannot be reached (refused, timed out, lost, auth failed): try the next one.

    ``stale``: the connection broke under a query, so a fresh one to the same host may work.
    """

    def __init__(self, message: str, *, stale: bool = False) -> None:
        super().__init__(message)
        self.stale = stale


class HostPool(Protocol):
    label: str

    async def fetch(self, args: tuple[str, ...]) -> list[Row]: ...

    async def reset(self) -> None:
        """Forget idle connections (after a failure they are probably dead)."""
        ...

    async def close(self) -> None: ...


class ServerPool:
    """What the PostgreSQL and MySQL per-host pools share: where, what, how big, how long.

    Subclasses create the driver's pool lazily in ``_get_pool`` and take connections with
    :meth:`_acquire`, which turns a slow or failing connect into :class:`ConnectError` (another
    host may do better).
    """

    def __init__(self, target: Target, host: str, port: int, sql: str, *, pool_size: int,
                 connect_timeout: float, query_timeout: float, password: PasswordSource) -> None:
        self.label = host if host.startswith("/") else f"{host}:{port}"
        self._target = target
        self._host, self._port = host, port
        self._sql = sql
        self._size = pool_size
        self._connect_timeout = connect_timeout or None
        self._query_timeout = query_timeout or None
        self._password = password
        self._pool: Any = None

    async def _acquire(self, pool: Any, errors: tuple[type[BaseException], ...]) -> Any:
        try:
            async with asyncio.timeout(self._connect_timeout):
                return await pool.acquire()
        except TimeoutError:
            raise ConnectError("connect timed out") from None
        except errors as exc:
            raise ConnectError(describe(exc)) from None


def describe(exc: BaseException) -> str:
    """An exception as a log-safe one-liner (driver messages hold no parameter values)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Failover:
    """Hosts of one database, tried in turn from the last one that worked.

    Connection problems move on to the next host; errors of the query itself (syntax, query
    timeout) do not, since every host would give the same answer.  Nothing is cached between
    requests apart from pooled connections, so a database that comes back is used at once.
    """

    def __init__(self, pools: list[HostPool], name: str) -> None:
        self._pools = pools
        self._name = name
        self._current = 0

    async def fetch(self, args: tuple[str, ...]) -> list[Row]:
        errors: list[str] = []
        count = len(self._pools)
        for step in range(count):
            index = (self._current + step) % count
            pool = self._pools[index]
            for attempt in (1, 2):
                try:
                    rows = await pool.fetch(args)
                except ConnectError as exc:
                    await pool.reset()
                    if exc.stale and attempt == 1:
                        continue  # a pooled connection died: one fresh try on this host
                    errors.append(f"{pool.label}: {exc}")
                    break
                if index != self._current:
                    log.warning("passdb %s: now using %s", self._name, pool.label)
                    self._current = index
                return rows
        raise BackendError("; ".join(errors) or "no host")

    async def close(self) -> None:
        for pool in self._pools:
            await pool.close()
