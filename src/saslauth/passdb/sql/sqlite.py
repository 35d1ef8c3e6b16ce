"""SQLite through the stdlib ``sqlite3``, on one dedicated thread (libraries.md section 6).

The file is opened read-only (``mode=ro``) on first use, again after any error and again when
the path names another file (``mv new.db users.db``), so a file that was missing or replaced is
picked up without a restart.  A missing file is an outage, never "unknown user".
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

from saslauth.errors import BackendError, BackendTimeout
from saslauth.passdb.sql.failover import Row


class SqliteBackend:
    def __init__(self, path: str, sql: str, query_timeout: float) -> None:
        self._path = path
        self._sql = sql
        self._timeout = query_timeout or None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None  # used on self._thread only
        self._file: tuple[int, int] = (0, 0)  # (st_dev, st_ino) of the open file

    def _open(self) -> sqlite3.Connection:
        uri = f"file:{quote(self._path)}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=self._timeout or 5.0,
                               check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA query_only = 1")
        return conn

    def _run(self, args: tuple[str, ...]) -> list[Row]:
        try:
            st = os.stat(self._path)
            if self._conn is not None and (st.st_dev, st.st_ino) != self._file:
                self._drop()
            if self._conn is None:
                self._conn = self._open()
                self._file = (st.st_dev, st.st_ino)
            cursor = self._conn.execute(self._sql, args)
            names = [d[0] for d in cursor.description or ()]
            rows = cursor.fetchmany(2)
            cursor.close()
        except OSError as exc:
            self._drop()
            raise BackendError(f"sqlite {self._path}: {exc.strerror}") from None
        except sqlite3.Error as exc:
            self._drop()
            raise BackendError(f"sqlite {self._path}: {exc}") from None
        return [tuple(zip(names, row, strict=True)) for row in rows]

    def _drop(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    async def fetch(self, args: tuple[str, ...]) -> list[Row]:
        future = asyncio.get_running_loop().run_in_executor(self._thread, self._run, args)
        try:
            async with asyncio.timeout(self._timeout):
                return await future
        except TimeoutError:
            conn = self._conn
            if conn is not None:
                conn.interrupt()  # thread-safe: makes the running statement fail at once
            raise BackendTimeout(f"sqlite {self._path}: query timed out") from None

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._drop)
        self._thread.shutdown(wait=False)
