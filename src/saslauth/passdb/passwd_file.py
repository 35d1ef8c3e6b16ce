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
from collections.abc import Callable
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


@dataclass(frozen=True, slots=True)
class Account:
    """What verifying one entry needs, worked out once (on first use) instead of per request.

    ``ok`` and ``mismatch`` are this entry's answers, the very values verify_plain returned
    when it built them each time; Lookup is frozen, so one instance serves every request.
    """

    stored: str = field(repr=False)
    cheap: bool  # schemes.is_cheap(stored): verified on the event loop
    plain: Callable[[bytes], bool] | None = field(repr=False)  # schemes.plain_checker(stored)
    ok: Lookup
    mismatch: Lookup


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
        # Accounts of the users seen since the last load: only those, so a big file loads as
        # fast as before and unknown names cannot grow this.
        self._accounts: dict[str, Account] = {}
        self._dummy: Account | None = None
        self._unknown = Lookup(Verdict.USER_UNKNOWN, backend=self.name)
        self._empty = Lookup(
            Verdict.PASSWORD_MISMATCH, backend=self.name, log_reason="empty password"
        )
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
        self._accounts = {}
        self._reported.clear()  # a new file: its problems are worth saying again
        self._stamp = stamp
        # Unknown users are checked against a real hash from the file, so they cost the same.
        first = next(iter(self._entries.values()), None)
        self._dummy = self._account(first) if first is not None and first.password else None
        log.info("passwd-file %s: loaded %d users", path, len(self._entries))

    def _account(self, entry: Entry) -> Account:
        scheme = self.settings.default_scheme
        return Account(
            entry.password,
            schemes.is_cheap(entry.password, default_scheme=scheme),
            schemes.plain_checker(entry.password, default_scheme=scheme),
            Lookup(Verdict.OK, backend=self.name, extra=entry.extra),
            Lookup(Verdict.PASSWORD_MISMATCH, user=None, backend=self.name, extra=entry.extra),
        )

    async def _check(self, password: bytes, account: Account, user: str) -> bool:
        """``schemes.verify(password, account.stored)``: on a thread and through the
        verification cache unless the scheme is cheap.  Callers test ``account.plain`` first
        (the same answer without set-up, and without this coroutine)."""
        stored, scheme = account.stored, self.settings.default_scheme
        if account.cheap:
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

    def answer_now(self, user: str, password: bytes) -> Lookup | None:
        """verify_plain's answer when it takes no waiting: the stored value is PLAIN (for an
        unknown user, the dummy's is), or there is none to check; None otherwise, and then
        verify_plain has the answer.  Raises BackendError as verify_plain does."""
        if not self._fresh:
            self._refresh()
        account = self._accounts.get(user)
        if account is None:
            entry = self._entries.get(user)
            if entry is None:
                dummy = self._dummy  # the same work as a known user's wrong password
                if dummy is None:
                    return self._unknown
                if dummy.plain is None:
                    return None
                dummy.plain(password)
                return self._unknown
            if not entry.password:
                return self._empty
            account = self._accounts[user] = self._account(entry)
        if account.plain is None:
            return None
        return account.ok if account.plain(password) else account.mismatch

    async def verify_plain(self, request: VerifyRequest) -> Lookup:
        user, password = request.user, request.password
        now = self.answer_now(user, password)
        if now is not None:
            return now
        # A scheme other than PLAIN (answer_now has loaded the file and made the account).
        account = self._accounts.get(user)
        if account is None:
            dummy = self._dummy
            if dummy is not None:
                with contextlib.suppress(SchemeError):
                    await self._check(password, dummy, user)
            return self._unknown
        try:
            matched = await self._check(password, account, user)
        except SchemeError as exc:
            # Once per user and problem (the message names the scheme, never the hash); every
            # attempt still says why in its own auth: line.
            if (user, str(exc)) not in self._reported:
                self._reported.add((user, str(exc)))
                log.error("passwd-file %s: user %s: %s", self.settings.path, user, exc)
            return Lookup(Verdict.INTERNAL_FAILURE, backend=self.name, log_reason=str(exc))
        return account.ok if matched else account.mismatch
