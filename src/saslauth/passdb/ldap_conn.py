"""Blocking LDAP operations with ldap3, one set of connections per worker thread.

Every worker thread of the driver's pool keeps two connections of its own (ldap3's SYNC
strategy is not shared between threads): ``service`` for searches (bound as ``bind_dn`` or
anonymous) and ``auth`` for binding as users.  A connection is opened by trying the URIs in
order; one that had to fall back to a later URI is dropped after :data:`FAILBACK_AFTER`
seconds, so the first server is tried again once it is back.  An operation that fails on a
connection (server restarted, network cut, timeout) is retried once on a fresh connection,
trying the *next* URI first (a server that accepts connections but hangs is skipped too); if
that fails too, :class:`~saslauth.errors.BackendError` is raised (a temporary failure) and
the next request starts over, so recovery needs no restart.
"""

from __future__ import annotations

import contextlib
import logging
import math
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import ldap3
from ldap3.core.exceptions import LDAPException

from saslauth.config import LdapSettings
from saslauth.errors import BackendError

log = logging.getLogger("saslauth.passdb")

FAILBACK_AFTER = 60.0
_SCOPES: dict[str, Literal["BASE", "LEVEL", "SUBTREE"]] = {
    "base": "BASE",
    "one": "LEVEL",
    "subtree": "SUBTREE",
}
# Bind results that mean "these credentials are wrong", not "the server is in trouble".
INVALID_CREDENTIALS = 49
_REFUSED = {INVALID_CREDENTIALS, 48, 50, 53}  # + inappropriateAuth, insufficientAccess, unwilling
_SIZE_LIMIT_EXCEEDED = 4
_NO_SUCH_OBJECT = 32


class _Tls(ldap3.Tls):
    """ldap3's Tls with the standard library doing the whole certificate check.

    ldap3 matches host names itself and, on Python >= 3.12, cannot match IP addresses; here
    OpenSSL checks the chain and the name (DNS or IP) and SNI is sent.
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(validate=context.verify_mode)
        self._context = context

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        connection.socket = self._context.wrap_socket(
            connection.socket,
            server_side=False,
            do_handshake_on_connect=do_handshake,
            server_hostname=connection.server.host,
        )


def tls_context(settings: LdapSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.ca_file)
    if not settings.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@dataclass
class _Slot:
    conn: ldap3.Connection
    index: int  # which URI
    opened: float


Entry = tuple[str, dict[str, list[bytes]]]


class Directory:
    """The blocking half of the driver; every method runs on one of the driver's threads."""

    def __init__(self, settings: LdapSettings) -> None:
        self.settings = settings
        mode = settings.tls_mode
        self._use_tls = mode != "none"
        self._tls: _Tls | None = None  # loaded on first use: a missing CA file is an outage
        self._ldaps = mode == "ldaps"
        self._starttls = mode == "starttls"
        # ldap3 packs this into SO_RCVTIMEO as an integer: whole seconds only.
        self._receive_timeout = max(1, math.ceil(settings.timeout))
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[ldap3.Connection] = set()

    # ---- connections -------------------------------------------------------------------------

    def _service_password(self) -> str | None:
        path = self.settings.bind_password_file
        if path is None:
            return None
        try:
            return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise BackendError(f"cannot read bind_password_file {path}: {exc}") from None

    def _tls_settings(self) -> _Tls | None:
        if self._use_tls and self._tls is None:
            try:
                self._tls = _Tls(tls_context(self.settings))
            except (OSError, ssl.SSLError) as exc:
                raise BackendError(f"cannot load ca_file {self.settings.ca_file}: {exc}") from None
        return self._tls

    def _connect(self, kind: Literal["service", "auth"], first: int) -> _Slot:
        tls = self._tls_settings()
        errors = []
        count = len(self.settings.uris)
        for index in [(first + step) % count for step in range(count)]:
            # A fresh Server each time: ldap3 remembers failed addresses on the Server object
            # and skips them for a few seconds, which would delay recovery.
            server = ldap3.Server(
                self.settings.uris[index],
                use_ssl=self._ldaps,
                tls=tls,
                connect_timeout=self.settings.connect_timeout or None,
                get_info=ldap3.NONE,
            )
            conn = ldap3.Connection(
                server,
                client_strategy=ldap3.SYNC,
                receive_timeout=self._receive_timeout,
                raise_exceptions=False,
                read_only=True,
                auto_referrals=False,
                check_names=False,
                auto_escape=False,
            )
            try:
                conn.open(read_server_info=False)
                if self._starttls and not conn.start_tls(read_server_info=False):
                    raise BackendError("StartTLS refused")
                if kind == "service" and self.settings.bind_dn is not None:
                    self._service_bind(conn)
            except (LDAPException, OSError, BackendError) as exc:
                errors.append(f"{self.settings.uris[index]}: {exc}")
                _close(conn)
                continue
            if index:
                log.warning(
                    "ldap %s: using %s (earlier servers failed: %s)",
                    self.settings.label,
                    self.settings.uris[index],
                    "; ".join(errors),
                )
            with self._lock:
                self._open.add(conn)
            return _Slot(conn, index, time.monotonic())
        raise BackendError("no LDAP server reachable: " + "; ".join(errors))

    def _service_bind(self, conn: ldap3.Connection) -> None:
        password = self._service_password()
        if not password:
            raise BackendError("bind_password_file is empty")
        conn.user, conn.password = self.settings.bind_dn, password
        conn.authentication = ldap3.SIMPLE
        ok = conn.bind(read_server_info=False)
        conn.password = None
        if not ok:
            # Wrong service credentials are an outage for every user, not a verdict.
            raise BackendError(f"service bind as {self.settings.bind_dn} failed: {_describe(conn)}")

    def _slot(self, kind: Literal["service", "auth"], first: int = 0) -> _Slot:
        slot: _Slot | None = getattr(self._local, kind, None)
        if slot is not None and (
            slot.conn.closed
            or (slot.index and time.monotonic() - slot.opened > FAILBACK_AFTER)
        ):
            self._drop(kind)
            slot = None
        if slot is None:
            slot = self._connect(kind, first)
            setattr(self._local, kind, slot)
        return slot

    def _drop(self, kind: Literal["service", "auth"]) -> None:
        slot: _Slot | None = getattr(self._local, kind, None)
        setattr(self._local, kind, None)
        if slot is not None:
            with self._lock:
                self._open.discard(slot.conn)
            _close(slot.conn)

    def close_all(self) -> None:
        with self._lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            _close(conn)

    # ---- operations --------------------------------------------------------------------------

    def search(self, base: str, scope: str, filter_: str, attributes: list[str]) -> list[Entry]:
        """Entries matching ``filter_`` (at most 2: the caller only needs to know "several")."""
        first = 0
        for attempt in (1, 2):
            slot = self._slot("service", first)
            conn = slot.conn
            try:
                conn.search(
                    search_base=base,
                    search_filter=filter_,
                    search_scope=_SCOPES[scope],
                    attributes=attributes or [ldap3.NO_ATTRIBUTES],
                    size_limit=2,
                    time_limit=self._receive_timeout,
                )
            except (LDAPException, OSError) as exc:
                self._drop("service")
                if attempt == 2:
                    raise BackendError(f"search failed: {exc}") from None
                first = slot.index + 1
                continue
            code = conn.result.get("result")
            if code not in (0, _SIZE_LIMIT_EXCEEDED, _NO_SUCH_OBJECT):
                self._drop("service")
                raise BackendError(f"search failed: {_describe(conn)}")
            return [
                (item["dn"], item.get("raw_attributes") or {})
                for item in conn.response or []
                if item.get("type") == "searchResEntry"
            ]
        raise AssertionError("unreachable")

    def bind(self, dn: str, password: bytes) -> tuple[bool, str]:
        """(True, "") if ``dn`` binds with ``password``; (False, why) if the server says no."""
        assert password, "an empty password is an unauthenticated bind"
        first = 0
        for attempt in (1, 2):
            slot = self._slot("auth", first)
            conn = slot.conn
            conn.user, conn.password = dn, password
            conn.authentication = ldap3.SIMPLE
            try:
                ok = conn.bind(read_server_info=False)
            except (LDAPException, OSError) as exc:
                self._drop("auth")
                if attempt == 2:
                    raise BackendError(f"bind failed: {exc}") from None
                first = slot.index + 1
                continue
            finally:
                conn.password = None
            if ok:
                return True, ""
            code = conn.result.get("result")
            if code in _REFUSED:
                return False, _describe(conn)
            self._drop("auth")
            raise BackendError(f"bind failed: {_describe(conn)}")
        raise AssertionError("unreachable")


def _describe(conn: ldap3.Connection) -> str:
    result = conn.result or {}
    message = str(result.get("message") or "").strip()
    text = f"{result.get('description', 'error')} ({result.get('result')})"
    return f"{text}: {message}" if message else text


def _close(conn: ldap3.Connection) -> None:
    with contextlib.suppress(LDAPException, OSError):
        conn.unbind()
    sock = getattr(conn, "socket", None)  # ldap3 leaves it open when opening failed
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
