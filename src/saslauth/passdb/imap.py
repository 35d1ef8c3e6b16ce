"""``driver: imap``: a password is right when an IMAP server accepts it (like saslauthd's rimap).

One connection per check, on the verifier's event loop (no blocking library): connect (implicit
TLS, STARTTLS or, on loopback only unless allowed, plain), read the greeting, learn the
capabilities, log in with ``LOGIN`` -- or ``AUTHENTICATE PLAIN`` (with SASL-IR when offered)
when the server advertises ``LOGINDISABLED``, or when the name and password are too long for a
LOGIN line and ``AUTH=PLAIN`` is offered -- then ``LOGOUT``.

Verdicts: tagged ``OK`` is OK; tagged ``NO`` is a password mismatch (IMAP cannot tell an
unknown user apart), except ``NO [UNAVAILABLE]``/``[SERVERBUG]`` (RFC 5530), which mean the
server could not check.  ``BAD``, ``BYE``, garbage, a refused or failed TLS handshake, a closed
connection and timeouts raise :class:`BackendError` (a temporary failure).  The password only
ever goes into the login command: no log line, exception or repr holds it.  No pool of warm
connections (yet): every check pays a TCP (and TLS) handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from concurrent.futures import Executor
from contextlib import AsyncExitStack
from typing import ClassVar, final

from saslauth.config import ImapSettings
from saslauth.errors import BackendError, BackendTimeout
from saslauth.passdb import Lookup, Verdict
from saslauth.passdb.imap_conn import Connection, Session
from saslauth.passdb.imap_wire import ImapProtocolError, Response, printable
from saslauth.verifier import VerifyRequest

log = logging.getLogger("saslauth.passdb.imap")

LOGOUT_WAIT = 1.0
# Dovecot's imap-login drops a LOGIN command over 1 KiB ("Input buffer full") but takes about
# 6 KB in AUTHENTICATE PLAIN; longer credentials go that way when the server offers it.
LONG_LOGIN = 960
_TEMPORARY_CODES = frozenset({b"UNAVAILABLE", b"SERVERBUG", b"LIMIT", b"INUSE"})


def _left(loop: asyncio.AbstractEventLoop, deadline: float) -> float:
    """Seconds until ``deadline``, less a margin so the caller's own timeout never fires."""
    return max(0.0, deadline - loop.time() - 0.05)


def _use_authenticate(caps: frozenset[str], user: bytes, password: bytes) -> bool:
    """AUTHENTICATE PLAIN when LOGIN is disabled or too long for the server's pre-login buffer."""
    if "AUTH=PLAIN" not in caps:
        return False
    return "LOGINDISABLED" in caps or len(user) + len(password) > LONG_LOGIN


def _expect_ok(response: Response, what: str) -> None:
    if response.kind != b"OK":
        raise BackendError(f"{what} refused: {response.kind.decode()} {printable(response.text)}")


@final
class Imap:
    driver: ClassVar[str] = "imap"

    def __init__(self, settings: ImapSettings, executor: Executor) -> None:
        self.settings = settings
        self.name = settings.label
        self._host = settings.host.strip("[]")  # "[::1]" is allowed in the config
        self._server_name = settings.server_name or self._host
        self._where = f"{settings.host}:{settings.effective_port}"
        self._context: ssl.SSLContext | None = None
        self._slots = asyncio.Semaphore(settings.max_connections)

    async def start(self, stack: AsyncExitStack) -> None:
        log.info("imap passdb %s: tls=%s", self._where, self.settings.tls)

    def _ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            try:
                context = ssl.create_default_context(cafile=self.settings.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise BackendError(f"cannot load ca_file {self.settings.ca_file}: {exc}") from None
            if not self.settings.tls_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._context = context
        return self._context

    async def verify_plain(self, request: VerifyRequest) -> Lookup:
        user, password = request.user.encode(), request.password
        if not password:
            return Lookup(Verdict.PASSWORD_MISMATCH, backend=self.name, log_reason="empty password")
        if any(c in password or c in user for c in b"\0\r\n"):
            reason = "NUL, CR or LF in the name or password"
            return Lookup(Verdict.PASSWORD_MISMATCH, backend=self.name, log_reason=reason)
        limit = self.settings.timeout
        try:
            async with asyncio.timeout(limit) as scope, self._slots:
                return await self._check(request.user, user, password, scope.when() or 0.0)
        except TimeoutError:
            raise BackendTimeout(f"{self._where}: no answer within {limit:g}s") from None
        except ssl.SSLCertVerificationError as exc:
            reason = exc.verify_message or exc.reason
            raise BackendError(f"{self._where}: certificate rejected: {reason}") from None
        except ssl.SSLError as exc:
            raise BackendError(f"{self._where}: TLS failed: {exc.reason}") from None
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise BackendError(f"{self._where}: {reason}") from None
        except BackendError as exc:
            raise BackendError(f"{self._where}: {exc}") from None

    async def _open(self) -> Connection:
        loop = asyncio.get_running_loop()
        settings = self.settings
        implicit = settings.tls == "implicit"
        try:
            async with asyncio.timeout(settings.connect_timeout):
                _, conn = await loop.create_connection(
                    Connection,
                    self._host,
                    settings.effective_port,
                    ssl=self._ssl_context() if implicit else None,
                    server_hostname=self._server_name if implicit else None,
                )
        except TimeoutError:
            raise BackendError(f"connect timed out after {settings.connect_timeout:g}s") from None
        return conn

    async def _starttls(self, session: Session) -> None:
        caps = session.capabilities or await session.capability()
        if "STARTTLS" not in caps:
            raise BackendError("the server does not offer STARTTLS")
        _expect_ok(await session.run(b"STARTTLS"), "STARTTLS")
        conn = session.conn
        if conn.responses or conn.reader.pending:
            raise ImapProtocolError("data after the STARTTLS reply (injection?)")
        assert conn.transport is not None
        settings = self.settings
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(settings.connect_timeout):
                transport = await loop.start_tls(
                    conn.transport,
                    conn,
                    self._ssl_context(),
                    server_hostname=self._server_name,
                )
        except TimeoutError:
            raise BackendError("TLS handshake timed out") from None
        if transport is None:
            raise BackendError("the connection closed during the TLS handshake")
        conn.transport = transport
        session.capabilities = None  # RFC 3501 6.2.1: forget what was said in clear

    async def _check(self, name: str, user: bytes, password: bytes, deadline: float) -> Lookup:
        loop = asyncio.get_running_loop()
        conn = await self._open()
        done = False
        try:
            session = Session(conn)
            greeting = await conn.response()
            if greeting.tag != b"*" or greeting.kind != b"OK":
                kind = greeting.kind.decode("ascii", "replace")
                raise BackendError(f"greeting {kind}: {printable(greeting.text)}")
            session.capabilities = greeting.capabilities
            if self.settings.tls == "starttls":
                await self._starttls(session)
            caps = session.capabilities or await session.capability()
            if _use_authenticate(caps, user, password):
                response = await session.authenticate_plain(user, password)
            elif "LOGINDISABLED" not in caps:
                response = await session.run(b"LOGIN", user, password)
            else:
                raise BackendError("LOGINDISABLED and no AUTH=PLAIN: no way to log in")
            lookup = self._verdict(name, response)
            done = True
            # The verdict stands: LOGOUT and the close only get what is left of the timeout.
            with contextlib.suppress(BackendError, OSError, TimeoutError):
                async with asyncio.timeout(min(LOGOUT_WAIT, _left(loop, deadline))):
                    tag = session.tag()
                    conn.write(tag + b" LOGOUT\r\n")
                    await session.next(tag, bye_ok=True)
            return lookup
        finally:
            await conn.close(abort=not done, wait=min(LOGOUT_WAIT, _left(loop, deadline)))

    def _verdict(self, name: str, response: Response) -> Lookup:
        text = printable(response.text)
        log.debug("imap %s: user %s: %s %s", self._where, name, response.kind.decode(), text)
        if response.kind == b"OK":
            return Lookup(Verdict.OK, backend=self.name)
        if response.kind == b"NO" and response.code_name not in _TEMPORARY_CODES:
            code = f"[{printable(response.code)}] " if response.code else ""
            return Lookup(
                Verdict.PASSWORD_MISMATCH, backend=self.name, log_reason=f"imap NO {code}{text}"
            )
        raise BackendError(f"login answered {response.kind.decode()}: {text}")
