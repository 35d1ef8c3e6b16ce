"""What a ``limits:`` configuration lets through: attack patterns on a simulated clock.

``python -m saslauth.limits.simulate [--config FILE] [--minutes 60] [--connections 10]``
drives the real limiter (memory store, injected clock) with attackers that retry as fast as
the answers allow, each connection one attempt at a time like Postfix's smtpd, and prints
for each pattern the attempts checked against the passdb per minute and the delay a
legitimate user sees meanwhile.  Nothing is sent anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
from collections.abc import Callable
from dataclasses import dataclass

from saslauth.limits.limiter import Limiter
from saslauth.limits.settings import LimitsSettings
from saslauth.passdb import Lookup, Verdict
from saslauth.verifier import VerifyRequest

Attempt = Callable[[int, int], tuple[str, str, str]]  # (connection, n) -> (user, password, rip)


@dataclass
class Result:
    name: str
    attempts: int
    verified: int
    refused: int
    minutes: float
    legit_delay: float
    legit_refused: bool

    def line(self) -> str:
        legit = "refused" if self.legit_refused else f"{self.legit_delay:.2f}"
        per_minute = [self.attempts / self.minutes, self.verified / self.minutes]
        return (
            f"{self.name:<34} {per_minute[0]:9.1f} {per_minute[1]:9.2f}"
            f" {self.refused / self.minutes:9.1f} {legit:>9}"
        )


PATTERNS: dict[str, tuple[Attempt, tuple[str, str]]] = {
    # name: (attempt generator, legitimate user's (user, rip) probed meanwhile)
    "brute force: 1 address, 1 user": (
        lambda c, n: ("victim", f"guess-{c}-{n}", "198.51.100.9"),
        ("victim", "192.0.2.50"),  # the real user, at home (logged in there before)
    ),
    "1 address, many users": (
        lambda c, n: (f"user{c}x{n}", f"guess-{c}-{n}", "198.51.100.9"),
        ("colleague", "198.51.100.9"),  # someone else behind that address (never logged in)
    ),
    "spraying: 1 password, 50 addresses": (
        lambda c, n: (f"user{c}x{n}", "Winter2026!", f"203.0.113.{c % 50}"),
        ("someone", "203.0.113.1"),
    ),
    "same wrong password repeated": (
        lambda c, n: ("phone", "old-password", "192.0.2.20"),
        ("colleague", "192.0.2.20"),
    ),
    "office: one user mistyping (4 pw)": (
        lambda c, n: ("typo", f"typo-{n % 4}", "192.0.2.10"),
        ("colleague", "192.0.2.10"),
    ),
}


async def simulate(
    settings: LimitsSettings,
    failure_delay: float,
    name: str,
    minutes: float,
    connections: int,
) -> Result:
    attempt, (legit_user, legit_rip) = PATTERNS[name]
    clock = [0.0]
    limiter = Limiter(settings, failure_delay, clock=lambda: clock[0])
    if name.startswith("brute force"):
        home = VerifyRequest(legit_user, b"right", "smtp", legit_rip, "", False)
        keys = limiter.keys(home)
        assert keys is not None
        await limiter.record(keys, home, Lookup(Verdict.OK))
    if name.startswith("spraying"):
        connections = max(connections, 50)
    queue = [(0.0, c, 0) for c in range(connections)]
    attempts = verified = refused = 0
    worst, locked_out = 0.0, False
    end = minutes * 60
    while queue:
        at, conn, n = heapq.heappop(queue)
        if at >= end:
            continue
        clock[0] = at
        user, password, rip = attempt(conn, n)
        request = VerifyRequest(user, password.encode(), "smtp", rip, "", False)
        keys, decision = await limiter.check(request)
        attempts += 1
        if decision.refused:
            refused += 1
            took = failure_delay
        else:
            verified += 1
            took = decision.delay + failure_delay
            if keys is not None:
                await limiter.record(keys, request, Lookup(Verdict.PASSWORD_MISMATCH))
        probe = VerifyRequest(legit_user, b"right", "smtp", legit_rip, "", False)
        legit = (await limiter.check(probe))[1]
        worst = max(worst, legit.delay)
        locked_out = locked_out or legit.refused
        heapq.heappush(queue, (at + took, conn, n + 1))
    return Result(name, attempts, verified, refused, minutes, worst, locked_out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="a saslauth config file (default: the built-in limits)")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--connections", type=int, default=10, help="attacker connections")
    args = parser.parse_args(argv)
    settings, failure_delay = LimitsSettings(), 2.0
    if args.config:
        from saslauth.config import load

        config = load(args.config)
        settings = config.limits or settings
        failure_delay = config.failure_delay
    print(f"{args.minutes:g} simulated minutes, {args.connections} attacker connections "
          f"(50 for spraying), failure_delay {failure_delay:g}s, max_delay {settings.max_delay:g}s")
    print(f"{'pattern':<34} {'tries/min':>9} {'checked':>9} {'refused':>9} {'legit(s)':>9}")
    for name in PATTERNS:
        run = simulate(settings, failure_delay, name, args.minutes, args.connections)
        print(asyncio.run(run).line())
    print("checked = attempts verified against the passdb per minute; legit(s) = the worst "
          "delay a legitimate user probed during the attack saw (or refused)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
