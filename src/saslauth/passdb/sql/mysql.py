"""MariaDB and MySQL through aiomysql (PyMySQL on asyncio): one lazy pool per host.

Connections run in autocommit, so no transaction snapshot hides rows added later.  PyMySQL
escapes the bound arguments itself (``%s`` paramstyle); query.py doubles literal ``%``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiomysql
import pymysql

from saslauth.errors import BackendError, BackendTimeout
from saslauth.passdb.sql.failover import ConnectError, Row, ServerPool, describe

# CR_CONNECTION_ERROR, CR_CONN_HOST_ERROR, CR_SERVER_GONE_ERROR, CR_SERVER_LOST, ER_CON_COUNT,
# ER_SERVER_SHUTDOWN, ER_ACCESS_DENIED, ER_DBACCESS_DENIED, ER_BAD_DB
_CONNECTION_CODES = {2002, 2003, 2006, 2013, 2055, 1040, 1053, 1044, 1045, 1049}


class MysqlPool(ServerPool):
    async def _get_pool(self) -> Any:
        if self._pool is None:
            where: dict[str, Any] = (
                {"unix_socket": self._host} if self._host.startswith("/")
                else {"host": self._host, "port": self._port}
            )
            self._pool = await aiomysql.create_pool(
                minsize=0, maxsize=self._size, user=self._target.user or None,
                password=self._password(), db=self._target.database, autocommit=True,
                charset=dict(self._target.options).get("charset", "utf8mb4"),
                connect_timeout=self._connect_timeout or 10, pool_recycle=300, **where,
            )
        return self._pool

    async def fetch(self, args: tuple[str, ...]) -> list[Row]:
        pool = await self._get_pool()
        conn = await self._acquire(pool, (OSError, pymysql.err.MySQLError))
        try:
            async with asyncio.timeout(self._query_timeout), conn.cursor() as cursor:
                await cursor.execute(self._sql, args)
                names = [d[0] for d in cursor.description or ()]
                rows = await cursor.fetchall()
        except TimeoutError:
            conn.close()  # a half-read reply: the connection cannot be reused
            raise BackendTimeout(f"{self.label}: query timed out") from None
        except (OSError, asyncio.IncompleteReadError) as exc:
            conn.close()
            raise ConnectError(describe(exc), stale=True) from None
        except pymysql.err.MySQLError as exc:
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
            if code in _CONNECTION_CODES:
                conn.close()
                raise ConnectError(describe(exc), stale=True) from None
            raise BackendError(f"{self.label}: {describe(exc)}") from None
        finally:
            with contextlib.suppress(Exception):
                await pool.release(conn)
        return [tuple(zip(names, row, strict=True)) for row in rows]

    async def reset(self) -> None:
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await self._pool.clear()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
            try:
                await asyncio.wait_for(pool.wait_closed(), 2.0)
            except (TimeoutError, Exception):
                pool.terminate()
