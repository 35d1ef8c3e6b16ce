"""The ``sql`` passdb driver: one configured query per login, Dovecot ``password_query`` style.

The query returns the stored password (column ``password``, or ``password_noscheme`` for a
value that must not be read as ``{SCHEME}``), optionally ``user`` (the canonical login name)
and any extra fields (``allow_nets``, ``nologin``, ``nodelay``, ...), which the chain applies
as for passwd-file.  NULL columns are left out; ``userdb_*`` columns are ignored.  No row is an
unknown user, verified against a dummy hash so it takes as long as a real one; several rows are
a configuration error (logged once per user): a temporary failure, never a pick.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import secrets
from collections import OrderedDict
from concurrent.futures import Executor
from contextlib import AsyncExitStack
from typing import ClassVar, final

from saslauth import schemes
from saslauth.config import SqlSettings
from saslauth.errors import BackendError, SchemeError
from saslauth.passdb import Lookup, Verdict
from saslauth.passdb.sql.failover import Backend, Failover, HostPool, Row
from saslauth.passdb.sql.query import compile_query, variables
from saslauth.passdb.sql.sqlite import SqliteBackend
from saslauth.verifier import VerifyRequest

log = logging.getLogger("saslauth.passdb")

_POOLS = {
    "postgresql": "saslauth.passdb.sql.pg:PgPool",
    "mysql": "saslauth.passdb.sql.mysql:MysqlPool",
}
_WARNED_MAX = 1024


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "y" if value else "n"
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "surrogateescape")
    return str(value)


def _dummy_hash(scheme: str) -> str:
    """A hash of a random password in ``scheme``, until a real row gives a better one."""
    try:
        return schemes.generate(scheme, secrets.token_hex(8).encode(), user="dummy@dummy")
    except (SchemeError, ValueError):
        return ""


@final
class SqlPassDB:
    driver: ClassVar[str] = "sql"

    def __init__(self, settings: SqlSettings, executor: Executor) -> None:
        self.settings = settings
        self.name = settings.label
        self._executor = executor
        self._target = settings.target()
        self._query = compile_query(settings.query, self._target.dialect)
        self._backend = self._make_backend()
        self._dummy = _dummy_hash(settings.default_scheme)
        self._warned: OrderedDict[tuple[str, str], None] = OrderedDict()

    def _make_backend(self) -> Backend:
        s, target = self.settings, self._target
        if target.dialect == "sqlite":
            return SqliteBackend(target.path, self._query.sql, s.query_timeout)
        module, _, cls = _POOLS[target.dialect].partition(":")
        factory = getattr(importlib.import_module(module), cls)
        pools: list[HostPool] = [
            factory(target, host, port, self._query.sql, pool_size=s.pool_size,
                    connect_timeout=s.connect_timeout, query_timeout=s.query_timeout,
                    password=self._password)
            for host, port in target.hosts
        ]
        return Failover(pools, self.name)

    def _password(self) -> str:
        path = self.settings.password_file
        if not path:
            return self._target.password
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise BackendError(f"cannot read password_file {path}: {exc}") from None

    async def start(self, stack: AsyncExitStack) -> None:
        stack.push_async_callback(self._backend.close)

    def _warn_once(self, user: str, problem: str) -> None:
        key = (user, problem)
        if key in self._warned:
            return
        self._warned[key] = None
        if len(self._warned) > _WARNED_MAX:
            self._warned.popitem(last=False)
        log.error("passdb %s: user %s: %s", self.name, user, problem)

    async def _check(self, password: bytes, stored: str, user: str) -> bool:
        scheme = self.settings.default_scheme
        if schemes.is_cheap(stored, default_scheme=scheme):
            return schemes.verify(password, stored, user=user, default_scheme=scheme)
        return await asyncio.get_running_loop().run_in_executor(
            self._executor,
            lambda: schemes.verify(password, stored, user=user, default_scheme=scheme),
        )

    async def verify_plain(self, request: VerifyRequest) -> Lookup:
        values = variables(request.user, request.service, request.rip, request.lip,
                           request.secured)
        rows = await self._backend.fetch(self._query.bind(values))
        if not rows:
            if self._dummy:
                with contextlib.suppress(SchemeError):
                    await self._check(request.password, self._dummy, request.user)
            return Lookup(Verdict.USER_UNKNOWN, backend=self.name)
        if len(rows) > 1:
            self._warn_once(request.user, "the query returned several rows (must be one)")
            return Lookup(Verdict.INTERNAL_FAILURE, backend=self.name,
                          log_reason="query returned several rows")
        stored, extra = self._split(rows[0])
        if stored is None:
            self._warn_once(request.user, "the query returned no password column")
            return Lookup(Verdict.INTERNAL_FAILURE, backend=self.name,
                          log_reason="no password column")
        if not stored:
            return Lookup(Verdict.PASSWORD_MISMATCH, backend=self.name, extra=extra,
                          log_reason="empty password")
        self._dummy = stored  # unknown users then cost what real ones cost
        try:
            matched = await self._check(request.password, stored, request.user)
        except SchemeError as exc:
            self._warn_once(request.user, str(exc))
            return Lookup(Verdict.INTERNAL_FAILURE, backend=self.name, log_reason=str(exc))
        verdict = Verdict.OK if matched else Verdict.PASSWORD_MISMATCH
        return Lookup(verdict, backend=self.name, extra=extra)

    def _split(self, row: Row) -> tuple[str | None, tuple[tuple[str, str | None], ...]]:
        stored: str | None = None
        extra: list[tuple[str, str | None]] = []
        for column, value in row:
            name = column.lower()
            if name == "password":
                stored = "" if value is None else _text(value)
            elif name == "password_noscheme":
                text = "" if value is None else _text(value)
                stored = text and "{" + self.settings.default_scheme + "}" + text
            elif value is not None and not name.startswith("userdb_"):
                extra.append((name, _text(value)))
        return stored, tuple(extra)
