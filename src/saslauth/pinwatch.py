"""``pin_fronts: auto``: when a pinned front should leave a crowded CPU, and when to try again.

A pinned front cannot move off its CPU when other work crowds it there; the scheduler would
have moved an unpinned one.  So with ``auto`` each front reads its own scheduler statistics
(``/proc/self/schedstat``: time run, time spent ready but waiting to run, turns on the CPU)
every :data:`INTERVAL` seconds, and this pure state machine decides.

An interval is crowded when the front waited more than :data:`CROWDED_RATIO` times as long as
it ran (it got less than 40% of the time it was ready to run) and more than
:data:`CROWDED_WAIT` ns (0.2 ms) per turn on average.  Measured on the 2-core benchmark machine with
authbench keeping both pinned fronts busy (``{PLAIN}``, 20 and 50 connections), with *k*
CPU-bound processes pinned to the front's CPU:

=========================  ==========  ==================
load on the front's CPU    wait / run  mean wait per turn
=========================  ==========  ==================
*k* = 0                    0.56-0.68   30-60 µs
*k* = 1                    0.97        140-295 µs  (pinned still no worse than unpinned)
*k* = 2                    2.01-2.02   273-275 µs
*k* = 3                    3.00-3.01   401-662 µs  (pinned p99 1.5x unpinned)
SHA512-CRYPT, saturated    2.1         120 µs  (every CPU alike: moving gains nothing)
=========================  ==========  ==================

The wait-to-run ratio counts the processes the front shares its CPU with; the mean wait tells
crowding on its CPU from a machine that is busy everywhere, and keeps an idle front's few short
waits from counting.  :data:`STREAK` crowded intervals in a row, each
with at least :data:`MIN_TURNS` turns, and the front serves unpinned — the ``pin_fronts:
false`` behaviour.  It tries its CPU again after :data:`FIRST_RETRY` seconds, twice as long
after each further crowded spell (at most :data:`MAX_RETRY`), and back to the first wait once
a return has lasted :data:`SETTLED` seconds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

INTERVAL = 2.0  # seconds between two readings
CROWDED_RATIO = 1.5  # crowded: waited more than this many times as long as it ran ...
CROWDED_WAIT = 200_000  # ... and more than this many ns per turn on the CPU, on average
MIN_TURNS = 50  # turns in an interval below which it decides nothing
STREAK = 3  # crowded intervals in a row before the front leaves its CPU
FIRST_RETRY = 60.0  # seconds away before the first return
MAX_RETRY = 960.0
SETTLED = 600.0  # a return that lasted this long resets the wait to FIRST_RETRY


@dataclass(frozen=True, slots=True)
class Schedstat:
    """``/proc/<pid>/schedstat``: cumulative ns on the CPU, ns waiting for it, turns on it."""

    run_ns: int
    wait_ns: int
    turns: int


def parse_schedstat(text: str) -> Schedstat:
    """The three numbers of a ``schedstat`` file; ValueError when it is not one."""
    fields = text.split()
    if len(fields) != 3:
        raise ValueError(f"schedstat: 3 numbers expected, got {len(fields)}")
    run, wait, turns = (int(field) for field in fields)
    if min(run, wait, turns) < 0:
        raise ValueError("schedstat: negative number")
    return Schedstat(run, wait, turns)


class Move(enum.Enum):
    LEAVE = "leave"  # serve unpinned: the CPU is crowded
    RETURN = "return"  # pin to the CPU again


@dataclass(frozen=True, slots=True)
class Decision:
    move: Move
    mean_wait_ns: int = 0  # LEAVE: the mean wait per turn over the crowded streak
    share: float = 0.0  # LEAVE: run / (run + wait) over the streak: the CPU it got when ready
    retry_in: float = 0.0  # LEAVE: seconds until the front tries its CPU again


class PinWatch:
    """Feed it a reading every :data:`INTERVAL` seconds; it says when to leave and return."""

    def __init__(self, now: float, first: Schedstat) -> None:
        self.pinned = True
        self._last = first
        self._streak: list[tuple[int, int, int]] = []  # (run, wait, turns) of crowded intervals
        self._since = now  # when the front was last pinned
        self._retry = FIRST_RETRY
        self._back_at = 0.0

    def observe(self, now: float, stat: Schedstat) -> Decision | None:
        """The move to make now, if any, given the statistics read at ``now``."""
        last, self._last = self._last, stat
        if not self.pinned:
            if now < self._back_at:
                return None
            self.pinned, self._since = True, now
            return Decision(Move.RETURN)
        run, wait = stat.run_ns - last.run_ns, stat.wait_ns - last.wait_ns
        turns = stat.turns - last.turns
        if turns < MIN_TURNS or min(run, wait) < 0 or not _crowded(run, wait, turns):
            self._streak.clear()
            return None
        self._streak.append((run, wait, turns))
        if len(self._streak) < STREAK:
            return None
        run, wait, turns = (sum(column) for column in zip(*self._streak, strict=True))
        self._streak.clear()
        if now - self._since >= SETTLED:
            self._retry = FIRST_RETRY
        retry, self._retry = self._retry, min(self._retry * 2, MAX_RETRY)
        self.pinned, self._back_at = False, now + retry
        return Decision(Move.LEAVE, wait // turns, run / (run + wait), retry)


def _crowded(run: int, wait: int, turns: int) -> bool:
    return wait > CROWDED_RATIO * run and wait > CROWDED_WAIT * turns
