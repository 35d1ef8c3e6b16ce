"""/etc/passwd, /etc/group and /etc/shadow read as files (Python 3.13 has no ``spwd`` module).

Formats from passwd(5), group(5) and shadow(5).  Malformed lines are logged by number (never
their content: a shadow line holds a hash) and skipped; the first entry of a name wins, as in
glibc's files backend.  :class:`CachedFile` re-reads a file when its inode, size or mtime
changes; a missing or unreadable file is an outage (:class:`~saslauth.errors.BackendError`).

Password ageing follows pam_unix's ``check_shadow_expiry`` (Linux-PAM): account expiry first,
then "change required" (last change 0), then max + inactive days (account inactive), then max
days (password expired).  An empty field is -1 ("not set").
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from saslauth.errors import BackendError

log = logging.getLogger("saslauth.passdb")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PasswdEntry:
    name: str
    password: str = field(repr=False)  # "x": the hash is in /etc/shadow
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class ShadowEntry:
    name: str
    password: str = field(repr=False)
    last_change: int = -1  # days since 1970-01-01; 0: must change at next login
    min_days: int = -1
    max_days: int = -1
    warn_days: int = -1
    inactive_days: int = -1
    expire: int = -1  # the account expires on this day


@dataclass(frozen=True, slots=True)
class Groups:
    by_gid: dict[int, str]  # gid -> group name
    members: dict[str, frozenset[str]]  # user -> names of the groups listing them as members

    def of(self, user: str, gid: int) -> frozenset[str]:
        """Every group of ``user``: the primary one (by gid) and those listing them."""
        primary = self.by_gid.get(gid)
        extra = self.members.get(user, frozenset())
        return extra | {primary} if primary is not None else extra


def _number(text: str) -> int:
    """A numeric field; empty means -1 (not set)."""
    return int(text) if text else -1


def _lines(text: str, origin: str, fields: int) -> list[tuple[int, list[str]]]:
    rows: list[tuple[int, list[str]]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line or line.startswith("#") or line[0] in "+-":  # NIS compat lines: skipped
            continue
        parts = line.split(":")
        if len(parts) != fields or not parts[0]:
            log.warning("%s:%d: malformed line skipped", origin, number)
            continue
        rows.append((number, parts))
    return rows


def parse_passwd(text: str, origin: str = "passwd") -> dict[str, PasswdEntry]:
    entries: dict[str, PasswdEntry] = {}
    for number, parts in _lines(text, origin, 7):
        try:
            entry = PasswdEntry(parts[0], parts[1], int(parts[2]), int(parts[3]))
        except ValueError:
            log.warning("%s:%d: malformed line skipped", origin, number)
            continue
        entries.setdefault(entry.name, entry)
    return entries


def parse_shadow(text: str, origin: str = "shadow") -> dict[str, ShadowEntry]:
    entries: dict[str, ShadowEntry] = {}
    for number, parts in _lines(text, origin, 9):
        try:
            numbers = [_number(value) for value in parts[2:8]]
        except ValueError:
            log.warning("%s:%d: malformed line skipped", origin, number)
            continue
        entries.setdefault(parts[0], ShadowEntry(parts[0], parts[1], *numbers))
    return entries


def parse_group(text: str, origin: str = "group") -> Groups:
    by_gid: dict[int, str] = {}
    members: dict[str, set[str]] = {}
    for number, parts in _lines(text, origin, 4):
        try:
            gid = int(parts[2])
        except ValueError:
            log.warning("%s:%d: malformed line skipped", origin, number)
            continue
        by_gid.setdefault(gid, parts[0])
        for user in filter(None, parts[3].split(",")):
            members.setdefault(user, set()).add(parts[0])
    return Groups(by_gid, {user: frozenset(names) for user, names in members.items()})


class Ageing(enum.Enum):
    OK = "ok"
    ACCOUNT_EXPIRED = "account expired"
    CHANGE_REQUIRED = "password change required"
    INACTIVE = "password expired and account inactive"
    PASSWORD_EXPIRED = "password expired"  # noqa: S105 - a reason, not a password


def check_ageing(entry: ShadowEntry, today: int) -> Ageing:
    """pam_unix's verdict on the ageing fields of ``entry`` on day ``today``."""
    if entry.expire >= 0 and today >= entry.expire:
        return Ageing.ACCOUNT_EXPIRED
    if entry.last_change == 0:
        return Ageing.CHANGE_REQUIRED
    if entry.last_change < 0 or today < entry.last_change:
        return Ageing.OK  # ageing disabled, or changed "in the future"
    passed = today - entry.last_change
    if entry.max_days >= 0:
        if entry.inactive_days >= 0 and passed >= entry.max_days + entry.inactive_days:
            return Ageing.INACTIVE
        if passed >= entry.max_days:
            return Ageing.PASSWORD_EXPIRED
    return Ageing.OK


class CachedFile(Generic[T]):
    """A parsed file, re-read only when its inode, size or mtime changed."""

    def __init__(self, path: str, parse: Callable[[str, str], T]) -> None:
        self.path = path
        self._parse = parse
        self._stamp: tuple[int, int, int] | None = None
        self._value: T | None = None

    def get(self) -> T:
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            if stamp == self._stamp and self._value is not None:
                return self._value
            with open(self.path, encoding="utf-8", errors="surrogateescape") as handle:
                st = os.fstat(handle.fileno())  # the stamp of what is read (files get renamed)
                stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
                text = handle.read()
        except OSError as exc:
            self._stamp = None
            raise BackendError(f"cannot read {self.path}: {exc.strerror}") from None
        self._value = self._parse(text, self.path)
        self._stamp = stamp
        return self._value
