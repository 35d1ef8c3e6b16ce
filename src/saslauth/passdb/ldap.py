"""The ``ldap`` passdb: bind as the user, or read the password attribute (as Dovecot's two modes).

``auth: bind`` finds the user's DN (a search under ``base`` with ``filter``, as ``bind_dn`` or
anonymously; or the ``user_dn`` template directly) and binds as it with the password given.
``auth: password`` reads ``password_attribute`` of the entry (with the service account) and
checks it with :mod:`saslauth.schemes`.

Rules that hold in both modes:

* An empty password (or one with a NUL) is a mismatch at once: it never reaches a bind, where
  an empty password would be an unauthenticated bind that "succeeds".
* User names go into filters and DNs escaped (:mod:`saslauth.passdb.ldap_template`); a name
  the directory would fold into another (``" alice"``) is unknown without asking it.
* Several entries for one name: an error (logged; temporary failure), never the first hit.
* Server down, timeout, broken service account: :class:`~saslauth.errors.BackendError`.
* An unknown user costs about what a known one does: in bind mode a bind with a DN that does
  not exist (the server answers invalidCredentials, without hashing), padded with a sleep to
  the running average of real users' binds; in password mode a verification against a dummy
  hash (the last real one seen, so the same scheme and cost).

ldap3 is blocking, so all directory work runs on the driver's own pool of ``pool_size``
threads, each with its own connections (:mod:`saslauth.passdb.ldap_conn`); hashing runs on the
verifier's executor, as in the passwd-file driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import AsyncExitStack
from typing import ClassVar, TypeVar, final

from saslauth import schemes
from saslauth.config import LdapSettings
from saslauth.errors import BackendTimeout, SchemeError
from saslauth.passdb import Lookup, Verdict
from saslauth.passdb.ldap_conn import Directory, Entry
from saslauth.passdb.ldap_template import directory_safe, expand_dn, expand_filter
from saslauth.verifier import VerifyRequest
from saslauth.verifier.client import REPLY_TIMEOUT

log = logging.getLogger("saslauth.passdb")
T = TypeVar("T")

_DUMMY_RDN = "cn=saslauth-no-such-user"
MAX_REQUEST_TIME = REPLY_TIMEOUT - 0.5
MAX_PAD = 1.0  # never make an unknown user wait longer than this for timing's sake


@final
class Ldap:
    driver: ClassVar[str] = "ldap"

    def __init__(self, settings: LdapSettings, executor: Executor) -> None:
        self.settings = settings
        self.name = settings.label
        self._hash_executor = executor
        self._directory = Directory(settings)
        self._pool = ThreadPoolExecutor(settings.pool_size, thread_name_prefix="ldap")
        # Worst case of one request: every URI's connect for both connections, then the
        # search and the bind (each may be retried once on a fresh connection) -- but never
        # longer than the front waits for the verifier: past that, nobody reads the answer,
        # and giving up frees the queue (work not yet started is dropped).
        self._deadline = min(
            2 * settings.connect_timeout * len(settings.uris) + 4 * settings.timeout + 1.0,
            MAX_REQUEST_TIME,
        )
        # Dummy bind DN for unknown users: under the search base, so the server answers like
        # for a real user (invalidCredentials) without any entry ever matching.
        self._dummy_dn = f"{_DUMMY_RDN},{settings.base}" if settings.base else _DUMMY_RDN
        self._dummy_hash = schemes.generate("SHA512-CRYPT", os.urandom(12).hex().encode())
        self._bind_cost: float | None = None
        self._overshoot = 0.0  # how late asyncio.sleep() wakes up, learnt as we go

    async def start(self, stack: AsyncExitStack) -> None:
        stack.callback(self.close)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._directory.close_all()

    async def _run(self, call: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._deadline):
                return await loop.run_in_executor(self._pool, call)
        except TimeoutError:
            raise BackendTimeout(f"no answer within {self._deadline:.0f}s") from None

    def _lookup(self, verdict: Verdict, reason: str | None = None) -> Lookup:
        return Lookup(verdict, backend=self.name, log_reason=reason)

    # ---- finding the entry (blocking) -----------------------------------------------------------

    def _find(self, user: str, attributes: list[str]) -> list[Entry]:
        settings = self.settings
        if settings.user_dn is not None:
            dn = expand_dn(settings.user_dn, user)
            return self._directory.search(dn, "base", "(objectClass=*)", attributes)
        query = expand_filter(settings.filter, user)
        return self._directory.search(settings.base, settings.scope, query, attributes)

    def _several(self, user: str, entries: list[Entry]) -> Lookup:
        log.error(
            "ldap %s: several entries match user %s (%s, %s, ...); refusing to pick one",
            self.name,
            user,
            entries[0][0],
            entries[1][0],
        )
        return self._lookup(Verdict.INTERNAL_FAILURE, "several directory entries match")

    # ---- bind mode (blocking: one thread hop per request) ---------------------------------------

    def _user_bind(self, dn: str, password: bytes) -> Lookup:
        started = time.monotonic()
        ok, why = self._directory.bind(dn, password)
        took = time.monotonic() - started
        # Running average of what a real user's bind costs (the server hashes the password).
        self._bind_cost = took if self._bind_cost is None else 0.9 * self._bind_cost + 0.1 * took
        return self._lookup(Verdict.OK) if ok else self._lookup(Verdict.PASSWORD_MISMATCH, why)

    def _dummy_bind(self, password: bytes) -> float:
        """Bind with a DN that does not exist; return how much shorter than a real bind it was.

        The server answers invalidCredentials at once, without hashing anything, so the
        caller sleeps the difference (asynchronously) to look like a real user's bind.
        """
        started = time.monotonic()
        self._directory.bind(self._dummy_dn, password)
        took = time.monotonic() - started
        return min(max(0.0, (self._bind_cost or 0.0) - took), MAX_PAD)

    def _bind_mode(self, user: str, password: bytes) -> tuple[Lookup, float]:
        if self.settings.user_dn is not None:
            # The server cannot tell "no such DN" from "wrong password" here, nor can we.
            return self._user_bind(expand_dn(self.settings.user_dn, user), password), 0.0
        entries = self._find(user, [])
        if len(entries) > 1:
            return self._several(user, entries), 0.0
        if not entries:
            return self._lookup(Verdict.USER_UNKNOWN), self._dummy_bind(password)
        return self._user_bind(entries[0][0], password), 0.0

    async def _bind_request(self, call: Callable[[], tuple[Lookup, float]]) -> Lookup:
        lookup, pad = await self._run(call)
        if pad:
            # Waking up from a sleep takes a while on a busy loop: aim that much earlier.
            loop = asyncio.get_running_loop()
            started = loop.time()
            await asyncio.sleep(max(0.0, pad - self._overshoot))
            late = loop.time() - started - pad
            self._overshoot = min(max(0.0, self._overshoot + 0.1 * late), 0.05)
        return lookup

    # ---- password mode --------------------------------------------------------------------------

    async def _check(self, password: bytes, stored: str, user: str) -> bool:
        scheme = self.settings.default_scheme
        if schemes.is_cheap(stored, default_scheme=scheme):
            return schemes.verify(password, stored, user=user, default_scheme=scheme)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._hash_executor,
            lambda: schemes.verify(password, stored, user=user, default_scheme=scheme),
        )

    async def _dummy_check(self, password: bytes, user: str) -> None:
        with contextlib.suppress(SchemeError):
            await self._check(password, self._dummy_hash, user)

    async def _password_mode(self, user: str, password: bytes) -> Lookup:
        attribute = self.settings.password_attribute
        entries = await self._run(lambda: self._find(user, [attribute]))
        if len(entries) > 1:
            return self._several(user, entries)
        if not entries:
            await self._dummy_check(password, user)
            return self._lookup(Verdict.USER_UNKNOWN)
        wanted = attribute.lower()
        values = [
            value.decode("utf-8", "surrogateescape")
            for name, items in entries[0][1].items()
            if name.lower() == wanted
            for value in items
        ]
        if not values:
            await self._dummy_check(password, user)
            return self._lookup(Verdict.PASSWORD_MISMATCH, f"entry has no {attribute}")
        self._dummy_hash = values[0]  # unknown users now cost what real ones do
        try:
            for stored in values:
                if await self._check(password, stored, user):
                    return self._lookup(Verdict.OK)
        except SchemeError as exc:
            log.error("ldap %s: user %s: %s", self.name, user, exc)
            return self._lookup(Verdict.INTERNAL_FAILURE, str(exc))
        return self._lookup(Verdict.PASSWORD_MISMATCH)

    # ---- entry point ----------------------------------------------------------------------------

    async def verify_plain(self, request: VerifyRequest) -> Lookup:
        user, password = request.user, request.password
        if not password or b"\0" in password:
            return self._lookup(Verdict.PASSWORD_MISMATCH, "empty password")
        if not directory_safe(user):
            if self.settings.auth == "password":
                await self._dummy_check(password, user)
                return self._lookup(Verdict.USER_UNKNOWN, "name the directory would fold")
            return await self._bind_request(
                lambda: (
                    self._lookup(Verdict.USER_UNKNOWN, "name the directory would fold"),
                    self._dummy_bind(password),
                )
            )
        if self.settings.auth == "password":
            return await self._password_mode(user, password)
        return await self._bind_request(lambda: self._bind_mode(user, password))
