"""Pure limiter arithmetic: no I/O, no clock of its own (times are passed in).

A *score* counts distinct failed guesses.  It leaks linearly at ``refuse / window`` per
second, so a client can make ``refuse`` guesses per ``window`` in the long run, plus the
initial burst.  Before an attempt, the scores that apply decide:

A failure counts (rounded up) until it has leaked away completely.

* ``score >= refuse`` -> refused at once, nothing is verified;
* ``score >= free`` -> delayed by ``base_delay * 2 ** (score - free)``;
* the delay is capped so that delay + failure delay never exceeds ``max_delay``.

The pair score (this network and this user) always applies.  The network and user scores and
the two spraying counts do not apply when this network logged in as this user recently, so an
attacker elsewhere cannot lock the real user out, and colleagues behind the same NAT keep
working while one of them types a wrong password.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from saslauth.limits.settings import LimitsSettings, Rule


def leak_rate(rule: Rule) -> float:
    return rule.refuse / rule.window


def decayed(value: float, at: float, now: float, rate: float) -> float:
    """The score ``value`` recorded at ``at``, seen at ``now`` (a clock going back is no leak)."""
    return max(0.0, value - max(0.0, now - at) * rate)


def failures(score: float) -> int:
    """A leaking score as a count: a failure counts until it has leaked away completely."""
    return max(0, math.ceil(score - 1e-6))


def delay_for(score: float, rule: Rule, base: float) -> float:
    if score < rule.free or base <= 0:
        return 0.0
    return float(base * 2.0 ** min(score - rule.free, 64.0))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the store knows about one attempt's keys, scores already decayed to now."""

    network: float = 0.0
    user: float = 0.0
    pair: float = 0.0
    recent_success: bool = False
    spray_users: int = 0
    spray_password: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    delay: float = 0.0
    refused: bool = False
    reason: str = ""  # network, user, pair, spray-users, spray-password; "" when not limited

    @property
    def log_text(self) -> str | None:
        """The ``limited=`` value of the per-attempt log line, or None when not limited."""
        if self.refused:
            return f"refused:{self.reason}"
        if self.delay > 0:
            return f"delay:{self.delay:.2f}s:{self.reason}"
        return None


ALLOW = Decision()


def decide(snapshot: Snapshot, settings: LimitsSettings, failure_delay: float) -> Decision:
    cap = max(0.0, settings.max_delay - failure_delay)
    scored: list[tuple[str, int, Rule]] = [("pair", failures(snapshot.pair), settings.pair)]
    if not snapshot.recent_success:
        scored.append(("network", failures(snapshot.network), settings.network))
        scored.append(("user", failures(snapshot.user), settings.user))
    for name, score, rule in scored:
        if score >= rule.refuse:
            return Decision(refused=True, reason=name)
    if not snapshot.recent_success:
        if snapshot.spray_users >= settings.spray_users.refuse:
            return Decision(refused=True, reason="spray-users")
        if snapshot.spray_password >= settings.spray_password.refuse:
            return Decision(refused=True, reason="spray-password")
    best = ALLOW
    for name, score, rule in scored:
        delay = min(delay_for(score, rule, settings.base_delay), cap)
        if delay > best.delay:
            best = Decision(delay=delay, reason=name)
    return best
