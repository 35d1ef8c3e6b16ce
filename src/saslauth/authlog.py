"""The ``auth:`` line: one log line per authentication attempt, written by the session.

``auth: result=ok user=alice mech=PLAIN service=smtp rip=192.0.2.7 lip=- secured=no
verdict=ok backend=passwd-file latency_ms=0.4`` — the result, who, how, from where, what the
passdb said and how long it took; never a password or a stored hash.  Values that need it are
quoted (:func:`saslauth.logs.kv`).  The line is rendered without a LogRecord when logging is
as :func:`saslauth.logs.setup` left it (:class:`saslauth.logbatch.LineWriter`), and its parts
that repeat are worked out once: per service or user name, and per Lookup (the verifier client
shares one Lookup among equal replies, and Lookups are immutable: the same object, the same
text).
"""

from __future__ import annotations

import logging
import time

from saslauth.attempt import Attempt
from saslauth.logbatch import LineWriter
from saslauth.logs import kv
from saslauth.passdb import Lookup

log = logging.getLogger("saslauth.auth")
_line = LineWriter(log)

_TEXTS: dict[str, str] = {}
_OUTCOMES: dict[int, tuple[Lookup | None, str]] = {}
MEMO_LIMIT = 1024  # remembered texts (services, user names), and Lookups; then they start over


def write(result: str, user: str | None, attempt: Attempt, lookup: Lookup | None) -> None:
    """Log one attempt: ``result`` (ok, fail, tempfail) for ``user`` (None: no name was
    given), ``lookup`` the passdb's answer (None: the input was refused before any passdb)."""
    if not log.isEnabledFor(logging.INFO):
        return
    # value_text and outcome_text's memories read here first: most lines need no call to them
    texts, service = _TEXTS, attempt.service
    name = "-" if user is None else texts.get(user) or value_text(user)
    known = _OUTCOMES.get(id(lookup))
    outcome = known[1] if known is not None and known[0] is lookup else outcome_text(lookup)
    _line.write(
        f"auth: result={result} user={name}"
        f" mech={attempt.mechanism} service={texts.get(service) or value_text(service)}"
        f" rip={attempt.rip or '-'} lip={attempt.lip or '-'}"
        f" secured={'yes' if attempt.secured else 'no'} {outcome}"
        f" latency_ms={(time.monotonic() - attempt.started) * 1000:.1f}"
    )


def value_text(value: str) -> str:
    """``kv(value)``, remembered: services and user names repeat from login to login."""
    text = _TEXTS.get(value)
    if text is None:
        if len(_TEXTS) >= MEMO_LIMIT:
            _TEXTS.clear()
        text = _TEXTS[value] = kv(value)  # never empty: kv quotes "" as two quotes
    return text


def outcome_text(lookup: Lookup | None) -> str:
    """``verdict=... backend=...`` and, when set, ``cache=``, ``reason=`` and ``limited=``."""
    known = _OUTCOMES.get(id(lookup))
    if known is not None and known[0] is lookup:
        return known[1]
    if lookup is None:
        text = "verdict=invalid_input backend=-"
    else:
        backend = kv(lookup.backend) if lookup.backend else "-"
        text = f"verdict={lookup.verdict.value} backend={backend}"
        if lookup.cache:
            text += f" cache={lookup.cache}"
        if lookup.log_reason:
            text += f" reason={kv(lookup.log_reason)}"
        if lookup.limited:
            text += f" limited={lookup.limited}"
    if len(_OUTCOMES) >= MEMO_LIMIT:
        _OUTCOMES.clear()
    _OUTCOMES[id(lookup)] = (lookup, text)  # kept alive with its text: its id stays its own
    return text
