"""Settings of the ``sql`` passdb: DSN parsing and validation (pydantic and stdlib only).

``config.py`` builds ``SqlSettings`` from :class:`SqlFields` and ``DriverSettings``; this module
cannot import ``config`` itself (that would be an import cycle), so it holds the keys, the
validators, ``resolve``, ``warnings`` and ``label``.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qsl, unquote

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from saslauth.passdb.sql.query import Dialect, compile_query

_SCHEMES: dict[str, Dialect] = {
    "sqlite": "sqlite", "postgresql": "postgresql", "postgres": "postgresql",
    "mysql": "mysql", "mariadb": "mysql",
}
_EXTRAS = {"postgresql": ("asyncpg", "postgresql"), "mysql": ("aiomysql", "mysql")}
_PORTS = {"postgresql": 5432, "mysql": 3306}
_OPTIONS = {"postgresql": {"sslmode"}, "mysql": {"charset"}, "sqlite": set[str]()}
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed DSN.  ``hosts`` holds ``(host, port)``; a host starting with ``/`` is a socket."""

    dialect: Dialect
    path: str = ""
    user: str = ""
    password: str = field(default="", repr=False)
    hosts: tuple[tuple[str, int], ...] = ()
    database: str = ""
    options: tuple[tuple[str, str], ...] = ()

    def shown(self) -> str:
        """The DSN without its password, for labels and logs."""
        if self.dialect == "sqlite":
            return f"sqlite://{self.path}"
        hosts = ",".join(h if h.startswith("/") else f"{h}:{p}" for h, p in self.hosts)
        user = f"{self.user}@" if self.user else ""
        return f"{self.dialect}://{user}{hosts}/{self.database}"


def parse_host(text: str, dialect: Dialect) -> tuple[str, int]:
    text = unquote(text.strip())
    if not text:
        raise ValueError("empty host name")
    if text.startswith("/"):
        return text, _PORTS[dialect]
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"bad IPv6 host {text!r}: write [::1]:5432")
        port = rest.removeprefix(":")
    else:
        host, _, port = text.partition(":") if text.count(":") == 1 else (text, "", "")
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        raise ValueError(f"bad port in host {text!r}")
    return host, int(port) if port else _PORTS[dialect]


def parse_dsn(dsn: str) -> Target:
    """Parse ``sqlite:///abs/path``, ``sqlite:relative.db``, ``postgresql://user@h1,h2:5433/db``,
    ``mysql://user:password@host/db``.  Errors never quote the password."""
    scheme, colon, rest = dsn.partition(":")
    dialect = _SCHEMES.get(scheme.lower()) if colon else None
    if dialect is None:
        raise ValueError("must start with sqlite:, postgresql:// or mysql://")
    userinfo = ""
    if dialect != "sqlite":
        if not rest.startswith("//"):
            raise ValueError(f"write {scheme}://user@host:port/database")
        # The password may hold unencoded / ? @ : everything up to the last @ is user info.
        userinfo, _, rest = rest[2:].rpartition("@")
        rest = "//" + rest
    rest, _, query = rest.partition("?")
    options = _options(query, dialect)
    if dialect == "sqlite":
        path = unquote(rest.removeprefix("//"))
        if not path:
            raise ValueError("sqlite needs a path: sqlite:///var/lib/saslauth/users.db")
        return Target("sqlite", path=path, options=options)
    hostlist, _, database = rest[2:].partition("/")
    user, _, password = userinfo.partition(":")
    hosts = tuple(parse_host(h, dialect) for h in hostlist.split(",")) if hostlist else ()
    if not unquote(database):
        raise ValueError("the DSN names no database (…/DATABASE)")
    return Target(dialect, user=unquote(user), password=unquote(password), hosts=hosts,
                  database=unquote(database), options=options)


def _options(query: str, dialect: Dialect) -> tuple[tuple[str, str], ...]:
    options = tuple(parse_qsl(query, keep_blank_values=True))
    unknown = sorted({k for k, _ in options} - _OPTIONS[dialect])
    if unknown:
        raise ValueError(f"unknown DSN option {unknown[0]!r}")
    for key, value in options:
        if key == "sslmode" and value not in SSLMODES:
            raise ValueError(f"sslmode must be one of {', '.join(SSLMODES)}")
    return options


def _absolute(path: str, base: Path) -> str:
    return path if os.path.isabs(path) else str((base / path).resolve())


class SqlFields(BaseModel):
    """The keys of ``driver: sql`` (timeouts are added by config.py, which owns Duration)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    dsn: str = Field(repr=False)
    hosts: tuple[str, ...] = ()
    password_file: str | None = None
    query: str = "SELECT password FROM users WHERE username = :user"
    default_scheme: str = "MD5"
    pool_size: int = Field(default=8, ge=1, le=100)

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, value: str) -> str:
        target = parse_dsn(value)
        extra = _EXTRAS.get(target.dialect)
        if extra is not None and importlib.util.find_spec(extra[0]) is None:
            raise ValueError(
                f"{target.dialect} needs the extra saslauth[{extra[1]}] "
                f"(pip install 'saslauth[{extra[1]}]')"
            )
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        dsn = info.data.get("dsn")
        dialect = parse_dsn(dsn).dialect if dsn else "postgresql"
        if value and dialect == "sqlite":
            raise ValueError("sqlite has no hosts")
        for host in value:
            parse_host(host, dialect)
        return value

    @field_validator("query")
    @classmethod
    def _query(cls, value: str, info: ValidationInfo) -> str:
        dsn = info.data.get("dsn")
        compile_query(value, parse_dsn(dsn).dialect if dsn else None)
        return value

    def target(self) -> Target:
        target = parse_dsn(self.dsn)
        if self.hosts:
            hosts = tuple(parse_host(h, target.dialect) for h in self.hosts)
            target = replace(target, hosts=hosts)
        if target.dialect != "sqlite" and not target.hosts:
            target = replace(target, hosts=(("localhost", _PORTS[target.dialect]),))
        return target

    def resolve(self, base: Path) -> Self:
        update: dict[str, Any] = {}
        target = parse_dsn(self.dsn)
        if target.dialect == "sqlite" and not os.path.isabs(target.path):
            update["dsn"] = "sqlite://" + _absolute(target.path, base)
        if self.password_file:
            update["password_file"] = _absolute(self.password_file, base)
        return self.model_copy(update=update)

    def warnings(self) -> list[str]:
        target = self.target()
        notes = []
        if target.dialect == "sqlite" and not os.access(target.path, os.R_OK):
            notes.append(f"passdb {target.path}: not readable by this user (the verifier reads it)")
        if target.password:
            notes.append(f"passdb {self.label}: the DSN holds a password; prefer password_file")
        if self.password_file and not os.access(self.password_file, os.R_OK):
            notes.append(f"passdb {self.label}: password_file {self.password_file} not readable")
        connect, query = (float(getattr(self, k, 0)) for k in ("connect_timeout", "query_timeout"))
        budget = connect * len(target.hosts) + query
        if budget > 6.0:
            notes.append(
                f"passdb {self.label}: connect_timeout x {len(target.hosts)} hosts + query_timeout"
                f" = {budget:g}s exceeds the verifier's 7 s reply budget"
            )
        return notes

    @property
    def label(self) -> str:
        return self.name or f"sql:{self.target().shown()}"
