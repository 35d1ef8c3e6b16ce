"""Dovecot's passwd-file format: ``user:{SCHEME}hash:uid:gid:gecos:home:shell:extra fields``.

Comments (``#``) and blank lines are skipped; extra fields are space-separated ``key=value``
words after the seventh colon (``userdb_*`` ones belong to the userdb and are ignored here).
The file is re-read whenever its inode, size or mtime changes.  A missing or unreadable file is
an outage (temporary failure), never "unknown user".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import ClassVar, final

from saslauth import cache as verifycache
from saslauth import schemes
from saslauth.config import PasswdFileSettings
from saslauth.errors import BackendError, SchemeError
from saslauth.events import Fields
from saslauth.passdb import Lookup, Verdict
from saslauth.verifier import VerifyRequest

log = logging.getLogger("saslauth.passdb")


@dataclass(frozen=True, slots=True)
class Entry:
    password: str = field(repr=False)
    extra: Fields = ()


def parse_extra(text: str) -> Fields:
    fields: list[tuple[str, str | None]] = []
    for word in text.split():
        name, eq, value = word.partition("=")
        if name and not name.startswith("userdb_"):
            fields.append((name, value if eq else None))
    return tuple(fields)


def parse(text: str, origin: str) -> dict[str, Entry]:
    """Parse a passwd-file.  Malformed lines are logged by number (never content) and skipped."""
    entries: dict[str, Entry] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(":", 7)
        if len(parts) < 2 or not parts[0]:
            log.warning("%s:%d: malformed line skipped", origin, number)
            continue
        extra = parse_extra(parts[7]) if len(parts) == 8 else ()
        entries.setdefault(parts[0], Entry(parts[1], extra))
    return entries


@final
class PasswdFile:
    driver: ClassVar[str] = "passwd-file"
    hash_cache: ClassVar[bool] = True  # caches by stored hash itself (saslauth.cache)
    task_free: ClassVar[bool] = True  # verify_plain needs no task of its own (verifier child)

    def __init__(self, settings: PasswdFileSettings, executor: Executor) -> None:
        self.settings = settings
        self.name = settings.label
        self._executor = executor
        self._stamp: tuple[int, int, int] | None = None
        self._entries: dict[str, Entry] = {}
        self._dummy = ""
        self._reported: set[tuple[str, str]] = set()  # scheme problems already logged
        self._fresh = False

    def _go_stale(self) -> None:
        self._fresh = False

    def _refresh(self) -> None:
        # One stat per event-loop turn: the requests of one batch share it.
        if self._fresh:
            return
        self._fresh = True
        asyncio.get_running_loop().call_soon(self._go_stale)
        path = self.settings.path
        try:
            st = os.stat(path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            if stamp == self._stamp:
                return
            with open(path, encoding="utf-8", errors="surrogateescape") as handle:
                text = handle.read()
        except OSError as exc:
            self._stamp = None
            self._fresh = False  # every request of this turn reports the outage
            raise BackendError(f"cannot read {path}: {exc.strerror}") from None
        self._entries = parse(text, path)
        self._reported.clear()  # a new file: its problems are worth saying again
        self._stamp = stamp
        # Unknown users are checked against a real hash from the file, so they cost the same.
        self._dummy = next(iter(self._entries.values())).password if self._entries else ""
        log.info("passwd-file %s: loaded %d users", path, len(self._entries))

    async def _check(self, password: bytes, stored: str, user: str) -> bool:
        scheme = self.settings.default_scheme
        if schemes.is_cheap(stored, default_scheme=scheme):
            return schemes.verify(password, stored, user=user, default_scheme=scheme)
        cache = verifycache.current()
        if cache is not None:  # keyed with the stored hash: a changed password counts at once
            cached = cache.check(user, password, stored)
            if cached is not None:
                return cached
        loop = asyncio.get_running_loop()
        matched = await loop.run_in_executor(
            self._executor,
            lambda: schemes.verify(password, stored, user=user, default_scheme=scheme),
        )
        if cache is not None:
            cache.remember(user, password, stored, matched)
        return matched

    async def verify_plain(self, request: VerifyRequest) -> Lookup:
        self._refresh()
        entry = self._entries.get(request.user)
        if entry is None:
            if self._dummy:
                with contextlib.suppress(SchemeError):
                    await self._check(request.password, self._dummy, request.user)
            return Lookup(Verdict.USER_UNKNOWN, backend=self.name)
        if not entry.password:
            return Lookup(Verdict.PASSWORD_MISMATCH, backend=self.name, log_reason="empty password")
        try:
            matched = await self._check(request.password, entry.password, request.user)
        except SchemeError as exc:
            # Once per user and problem (the message names the scheme, never the hash); every
            # attempt still says why in its own auth: line.
            if (request.user, str(exc)) not in self._reported:
                self._reported.add((request.user, str(exc)))
                log.error("passwd-file %s: user %s: %s", self.settings.path, request.user, exc)
            return Lookup(Verdict.INTERNAL_FAILURE, backend=self.name, log_reason=str(exc))
        if not matched:
            return Lookup(
                Verdict.PASSWORD_MISMATCH, user=None, backend=self.name, extra=entry.extra
            )
        return Lookup(Verdict.OK, backend=self.name, extra=entry.extra)
