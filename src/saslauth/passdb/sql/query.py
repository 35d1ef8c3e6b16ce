"""Turn a configured SQL query into driver SQL text plus bound parameters.

Two spellings are accepted and may be mixed:

* named parameters ``:user``, ``:username`` (the local part), ``:domain``, ``:service``,
  ``:rip`` and ``:lip``;
* Dovecot 2.3 variables, so a Dovecot ``password_query`` can be pasted unchanged: ``%u``,
  ``%n``, ``%d``, ``%s``, ``%r``, ``%l``, ``%c``, the long forms ``%{user}`` ... and the
  modifiers ``L`` (lower), ``U`` (upper), ``T`` (trim), ``E`` (escape: a no-op, values are
  bound).  A quoted string holding variables (``'%u'``, ``"%n@%d"``) becomes *one* bound
  parameter whose value is the expanded string.

The SQL text is fixed when the configuration is read; user input only ever reaches the driver
as parameter values.  Placeholders are rendered in each driver's paramstyle: ``?`` (sqlite3),
``$1`` (asyncpg), ``%s`` (PyMySQL, which also needs every literal ``%`` doubled).
This module is pure stdlib: the config validator uses it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

Dialect = Literal["sqlite", "postgresql", "mysql"]

NAMES = ("user", "username", "domain", "service", "rip", "lip", "secured")
_SHORT = {"u": "user", "n": "username", "d": "domain", "s": "service", "r": "rip", "l": "lip",
          "c": "secured"}
_LONG = {**{n: n for n in NAMES}, "real_rip": "rip", "real_lip": "lip", "remote_ip": "rip",
         "local_ip": "lip", "protocol": "service"}
_MODIFIERS: dict[str, Callable[[str], str]] = {
    "L": str.lower, "U": str.upper, "T": str.rstrip, "E": lambda v: v,
}
_FILTERS: dict[str, Callable[[str], str]] = {"lower": str.lower, "upper": str.upper}
_VAR = re.compile(r"%([A-Z]*)(?:\{([^}]*)\}|(.))", re.DOTALL)
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@dataclass(frozen=True, slots=True)
class Var:
    name: str
    modifiers: tuple[str, ...] = ()

    def expand(self, values: Mapping[str, str]) -> str:
        value = values.get(self.name, "")
        for modifier in self.modifiers:
            value = (_FILTERS.get(modifier) or _MODIFIERS[modifier])(value)
        return value


@dataclass(frozen=True, slots=True)
class Param:
    """One bound parameter: literal pieces and variables, concatenated."""

    parts: tuple[str | Var, ...]

    def value(self, values: Mapping[str, str]) -> str:
        return "".join(p if isinstance(p, str) else p.expand(values) for p in self.parts)


@dataclass(frozen=True, slots=True)
class Compiled:
    sql: str
    params: tuple[Param, ...]

    def bind(self, values: Mapping[str, str]) -> tuple[str, ...]:
        return tuple(param.value(values) for param in self.params)


def variables(user: str, service: str, rip: str | None, lip: str | None,
              secured: bool) -> dict[str, str]:
    """The values of every variable for one request (``%n``/``%d`` split at the first ``@``)."""
    local, _, domain = user.partition("@")
    return {"user": user, "username": local, "domain": domain, "service": service,
            "rip": rip or "", "lip": lip or "", "secured": "secured" if secured else ""}


def _parse_var(match: re.Match[str]) -> Var | str:
    modifiers, long, short = match.groups()
    if short == "%" and not modifiers:
        return "%"
    filters: list[str] = []
    if long is not None:
        name, *rest = (part.strip() for part in long.split("|"))
        for item in rest:
            if item not in _FILTERS:
                raise ValueError(f"unknown filter |{item} in %{{{long}}} (known: lower, upper)")
            filters.append(item)
        canonical = _LONG.get(name)
        shown = f"%{{{long}}}"
    else:
        canonical = _SHORT.get(short)
        shown = f"%{short}"
    if canonical is None:
        if shown in ("%w", "%{password}"):
            raise ValueError("the password cannot be a query parameter")
        known = ", ".join(f"%{k}" for k in _SHORT) + ", %{" + "}, %{".join(NAMES) + "}"
        raise ValueError(f"unknown variable {shown} (known: {known})")
    for modifier in modifiers:
        if modifier not in _MODIFIERS:
            raise ValueError(f"unsupported modifier %{modifier} (supported: L, U, T, E)")
    return Var(canonical, tuple(modifiers) + tuple(filters))


def _template(text: str) -> tuple[str | Var, ...]:
    """Split text holding Dovecot variables into literal pieces and variables."""
    parts: list[str | Var] = []
    pos = 0
    for match in _VAR.finditer(text):
        if match.start() > pos:
            parts.append(text[pos : match.start()])
        parts.append(_parse_var(match))
        pos = match.end()
    if pos < len(text):
        parts.append(text[pos:])
    if "%" in text[pos:]:
        raise ValueError("a lone % at the end (write %% for a literal %)")
    return tuple(parts)


def _unquote(body: str, quote: str, dialect: Dialect | None) -> str:
    body = body.replace(quote * 2, quote)
    if dialect == "mysql":
        body = re.sub(r"\\(.)", r"\1", body, flags=re.DOTALL)
    return body


class _Writer:
    def __init__(self, dialect: Dialect | None) -> None:
        self.dialect = dialect
        self.out: list[str] = []
        self.params: list[Param] = []
        self.numbers: dict[Param, int] = {}

    def text(self, sql: str) -> None:
        self.out.append(sql.replace("%", "%%") if self.dialect == "mysql" else sql)

    def param(self, param: Param) -> None:
        if self.dialect == "postgresql":
            if param not in self.numbers:
                self.params.append(param)
                self.numbers[param] = len(self.params)
            self.out.append(f"${self.numbers[param]}")
            return
        self.params.append(param)
        self.out.append("%s" if self.dialect == "mysql" else "?")

    def plain(self, sql: str) -> None:
        """SQL outside quotes and comments: variables and named parameters become params."""
        if self.dialect == "sqlite" and "?" in sql:
            raise ValueError("write :user or '%u', not ? (placeholders are generated)")
        if self.dialect == "postgresql" and re.search(r"\$\d", sql):
            raise ValueError("write :user or '%u', not $1 (placeholders are generated)")
        pos = 0
        for match in _NAMED.finditer(sql):
            name = match.group(1)
            if name not in NAMES:
                raise ValueError(f"unknown parameter :{name} (known: :{', :'.join(NAMES)})")
            self.plain_vars(sql[pos : match.start()])
            self.param(Param((Var(name),)))
            pos = match.end()
        self.plain_vars(sql[pos:])

    def plain_vars(self, sql: str) -> None:
        for part in _template(sql):
            if isinstance(part, str):
                self.text(part)
            else:
                self.param(Param((part,)))


_TOKEN = re.compile(r"""'(?:[^'\\]|''|\\.)*'|"(?:[^"\\]|""|\\.)*"|`[^`]*`|--[^\n]*|/\*.*?\*/""",
                    re.DOTALL)
_TOKEN_STD = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/""", re.DOTALL)


def compile_query(query: str, dialect: Dialect | None) -> Compiled:
    """Translate ``query``; raises ValueError naming the problem (never a user value)."""
    if not query.strip():
        raise ValueError("the query is empty")
    writer = _Writer(dialect)
    token = _TOKEN if dialect == "mysql" else _TOKEN_STD
    pos = 0
    for match in token.finditer(query):
        writer.plain(query[pos : match.start()])
        lexeme = match.group()
        if lexeme[0] in "'\"" and "%" in lexeme:
            parts = _template(_unquote(lexeme[1:-1], lexeme[0], dialect))
            if any(isinstance(p, Var) for p in parts):
                writer.param(Param(tuple(parts)))
            else:  # only %% escapes: a literal string
                writer.text(lexeme[0] + "".join(map(str, parts)).replace(lexeme[0], lexeme[0] * 2)
                            + lexeme[0])
        else:
            writer.text(lexeme)
        pos = match.end()
    rest = query[pos:]
    if re.search(r"['\"`]", rest) or "/*" in rest:
        raise ValueError("unterminated quote or comment in the query")
    writer.plain(rest)
    return Compiled("".join(writer.out), tuple(writer.params))
