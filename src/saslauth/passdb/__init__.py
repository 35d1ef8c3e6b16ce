"""Password databases: the verdict enum and lookup result shared by every driver.

Expected failures are values: a driver answers with a :class:`Lookup` whose :class:`Verdict`
mirrors Dovecot's ``passdb_result``.  Only outages raise (:class:`saslauth.errors.BackendError`).
This module stays import-light: the front process uses these types without loading any driver.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from saslauth.events import Fields


class Verdict(enum.Enum):
    OK = "ok"
    PASSWORD_MISMATCH = "mismatch"  # noqa: S105 - a verdict name, not a password
    USER_UNKNOWN = "unknown"
    USER_DISABLED = "disabled"
    PASS_EXPIRED = "expired"  # noqa: S105 - a verdict name, not a password
    SCHEME_NOT_AVAILABLE = "scheme"
    INTERNAL_FAILURE = "tempfail"
    NEXT = "next"
    RATE_LIMITED = "limited"  # refused by saslauth.limits before any passdb was asked


@dataclass(frozen=True, slots=True)
class Lookup:
    """A passdb's answer.

    Args:
        verdict: the result class.
        user: the canonical user name when the backend rewrote it (``user=`` extra field).
        backend: the name of the driver that decided, for the per-attempt log line.
        extra: passdb extra fields, in order; only OK replies carry them to the client.
        nodelay: answer a failure at once (Dovecot's ``nodelay`` field).
        log_reason: why, for the log only (``account locked``); never sent to the client.
        limited: the limiter's decision for the log line (``delay:1.50s:network``), or None.
        cache: ``hit``/``miss`` when the verification cache was consulted (the log line's
            ``cache=``), else empty; set by the verifier child, not by drivers.
    """

    verdict: Verdict
    user: str | None = None
    backend: str = ""
    extra: Fields = ()
    nodelay: bool = False
    log_reason: str | None = None
    limited: str | None = None
    cache: str = ""
