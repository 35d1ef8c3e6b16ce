"""pin_fronts: auto — when a pinned front leaves a crowded CPU and when it comes back
(saslauth.pinwatch, pure), and the Watcher that reads /proc and moves the front."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from saslauth import affinity, pinwatch
from saslauth.pinwatch import (
    CROWDED_RATIO,
    CROWDED_WAIT,
    FIRST_RETRY,
    INTERVAL,
    MAX_RETRY,
    MIN_TURNS,
    SETTLED,
    STREAK,
    Decision,
    Move,
    PinWatch,
    Schedstat,
)


class Feed:
    """A PinWatch fed one interval at a time: ``turns`` turns with ``wait`` ns of wait each."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.stat = Schedstat(10**9, 10**8, 10**4)
        self.watch = PinWatch(self.now, self.stat)

    def interval(self, wait: int, turns: int = 1000, run: int = 50_000) -> Decision | None:
        """An interval of ``turns`` turns, each ``run`` ns on the CPU after ``wait`` ns."""
        self.now += INTERVAL
        s = self.stat
        self.stat = Schedstat(s.run_ns + run * turns, s.wait_ns + wait * turns, s.turns + turns)
        return self.watch.observe(self.now, self.stat)

    def crowd(self) -> Decision | None:
        """STREAK crowded intervals: the last one's decision."""
        decisions = [self.interval(CROWDED_WAIT * 2) for _ in range(STREAK)]
        assert decisions[:-1] == [None] * (STREAK - 1)
        return decisions[-1]

    def away(self, seconds: float) -> list[Decision | None]:
        return [self.interval(10**7) for _ in range(round(seconds / INTERVAL))]


def test_parse_schedstat() -> None:
    assert pinwatch.parse_schedstat("66741893 1467788 97\n") == Schedstat(66741893, 1467788, 97)
    for bad in ("", "1 2", "1 2 3 4", "a b c", "1 -2 3"):
        with pytest.raises(ValueError, match=r"schedstat|invalid literal"):
            pinwatch.parse_schedstat(bad)


def test_a_front_that_waits_as_under_load_stays_pinned() -> None:
    feed = Feed()  # 60-70 µs per turn: the benchmark's saturated fronts
    assert [feed.interval(70_000) for _ in range(100)] == [None] * 100
    assert [feed.interval(CROWDED_WAIT) for _ in range(10)] == [None] * 10  # at it: not above
    assert feed.watch.pinned


def test_crowded_needs_both_a_long_wait_and_a_small_share() -> None:
    feed = Feed()
    # one busy process on the CPU: waits as long as it runs (0.3 ms per turn): stays
    assert [feed.interval(300_000, run=300_000) for _ in range(10)] == [None] * 10
    # waits 1.5 times as long as it runs: still not more
    ratio_only = int(CROWDED_RATIO * 200_000)
    assert [feed.interval(ratio_only, run=200_000) for _ in range(10)] == [None] * 10
    # a small share, but short waits (an idle front's few wake-ups): stays
    assert [feed.interval(CROWDED_WAIT, run=10_000) for _ in range(10)] == [None] * 10
    # three busy processes on its CPU: waits 3 times its run, 0.6 ms per turn: leaves
    decisions = [feed.interval(600_000, run=200_000) for _ in range(STREAK)]
    assert decisions[-1] == Decision(Move.LEAVE, 600_000, share=0.25, retry_in=FIRST_RETRY)


def test_streak_crowded_intervals_in_a_row_make_it_leave() -> None:
    feed = Feed()
    share = 50_000 / (50_000 + CROWDED_WAIT * 2)
    assert feed.crowd() == Decision(Move.LEAVE, CROWDED_WAIT * 2, share, FIRST_RETRY)
    assert not feed.watch.pinned


def test_the_mean_wait_is_over_the_whole_streak() -> None:
    feed = Feed()
    waits, turns = [400_000, 1_000_000, 700_000], [100, 300, 600]
    decisions = [feed.interval(w, t, run=100_000) for w, t in zip(waits, turns, strict=True)]
    wait = 400_000 * 100 + 1_000_000 * 300 + 700_000 * 600
    share = 100_000 * 1000 / (100_000 * 1000 + wait)
    assert decisions == [None, None, Decision(Move.LEAVE, wait // 1000, share, FIRST_RETRY)]


def test_a_calm_or_idle_interval_breaks_the_streak() -> None:
    feed = Feed()
    for breaker in ({"wait": 10_000}, {"wait": 10**7, "turns": MIN_TURNS - 1}):
        for _ in range(STREAK - 1):
            assert feed.interval(10**6) is None
        assert feed.interval(**breaker) is None
    assert [feed.interval(10**6) for _ in range(STREAK - 1)] == [None] * (STREAK - 1)
    assert feed.watch.pinned
    assert feed.interval(10**6, MIN_TURNS) is not None  # MIN_TURNS turns do count


def test_it_returns_after_the_retry_and_waits_twice_as_long_each_time() -> None:
    feed = Feed()
    expected = FIRST_RETRY
    for _ in range(6):
        decision = feed.crowd()
        assert decision is not None and decision.retry_in == expected
        # away: no decision, however crowded the statistics look, until the retry is due
        steps = feed.away(expected - INTERVAL)
        assert steps == [None] * len(steps)
        assert feed.interval(10**7) == Decision(Move.RETURN)
        assert feed.watch.pinned
        expected = min(expected * 2, MAX_RETRY)
    assert expected == MAX_RETRY


def test_the_intervals_away_do_not_count_after_the_return() -> None:
    feed = Feed()
    feed.crowd()
    feed.away(FIRST_RETRY - INTERVAL)
    assert feed.interval(10**7) == Decision(Move.RETURN)
    # the next interval is measured from the reading at the return, not from before leaving
    assert [feed.interval(70_000) for _ in range(STREAK)] == [None] * STREAK


def test_a_return_that_lasts_resets_the_wait() -> None:
    feed = Feed()
    feed.crowd()
    feed.away(FIRST_RETRY - INTERVAL)
    feed.interval(0)  # back
    second = feed.crowd()
    assert second is not None and second.retry_in == 2 * FIRST_RETRY
    feed.away(2 * FIRST_RETRY - INTERVAL)
    feed.interval(0)  # back again, and now calm for SETTLED seconds
    for _ in range(round(SETTLED / INTERVAL)):
        assert feed.interval(70_000) is None
    third = feed.crowd()
    assert third is not None and third.retry_in == FIRST_RETRY


def test_counters_that_go_backwards_decide_nothing() -> None:
    watch = PinWatch(0.0, Schedstat(10**9, 10**9, 10**5))
    assert watch.observe(INTERVAL, Schedstat(10**9, 0, 10**6)) is None


# the Watcher: real file reads, real (patched) affinity calls, on a running loop


@pytest.fixture
def moves(monkeypatch: pytest.MonkeyPatch) -> list[set[int]]:
    calls: list[set[int]] = []
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cpus: calls.append(set(cpus)))
    return calls


def _write(path: Path, stat: Schedstat) -> None:
    path.write_text(f"{stat.run_ns} {stat.wait_ns} {stat.turns}\n")


def test_watcher_leaves_a_crowded_cpu_and_logs_why(
    tmp_path: Path, moves: list[set[int]], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "schedstat"
    stat = Schedstat(0, 0, 0)
    _write(path, stat)
    clock = [100.0]
    watcher = affinity.Watcher(1, 2, 5, {3, 5}, os.open(path, os.O_RDONLY), lambda: clock[0])

    async def run() -> None:
        nonlocal stat
        for _ in range(STREAK):
            stat = Schedstat(stat.run_ns + 10**8, stat.wait_ns + 5 * 10**8, stat.turns + 1000)
            _write(path, stat)
            clock[0] += INTERVAL
            watcher._tick()
        assert watcher._timer is not None  # still watching, for the return
        clock[0] += FIRST_RETRY
        watcher._tick()
        watcher.stop()
        assert watcher._timer is None

    with caplog.at_level(logging.INFO, "saslauth.front"):
        asyncio.run(run())
    assert moves == [{3, 5}, {5}]
    assert [r.getMessage() for r in caplog.records] == [
        "front 2 of 2 leaves CPU 5: other work crowds it (for 6 s it ran 17% of the time it was"
        " ready to, waiting 0.50 ms per turn on average); it runs on any CPU and tries CPU 5"
        " again in 60 s",
        "front 2 of 2 pinned to CPU 5 again",
    ]


def test_watcher_that_cannot_read_stops_and_says_so(
    tmp_path: Path, moves: list[set[int]], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "schedstat"
    _write(path, Schedstat(1, 2, 3))
    watcher = affinity.Watcher(0, 2, 0, {0, 1}, os.open(path, os.O_RDONLY))
    path.write_text("garbage\n")

    async def run() -> None:
        watcher.start()
        watcher._tick()

    with caplog.at_level(logging.INFO, "saslauth.front"):
        asyncio.run(run())
    assert watcher._timer is None and moves == []
    assert [r.getMessage() for r in caplog.records] == [
        "pin_fronts: front 1 of 2 stops watching CPU 0 (schedstat: 3 numbers expected, got 1)"
    ]


def test_auto_pins_only_when_each_front_gets_a_cpu_of_its_own(
    moves: list[set[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert affinity.auto_pin(0, 1) is None  # one front: nothing to keep apart
    assert affinity.auto_pin(0, 4) is None  # more fronts than CPUs
    assert moves == []
    watchers = [affinity.auto_pin(i, 3) for i in range(3)]
    try:
        assert [w.cpu if w else None for w in watchers] == [0, 1, 2]
        assert moves == [{0}, {1}, {2}]
    finally:
        for watcher in watchers:
            if watcher is not None:
                watcher.stop()


def test_auto_without_scheduler_statistics_does_not_pin(
    moves: list[set[int]], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(affinity, "SCHEDSTAT", "/nonexistent/schedstat")
    with caplog.at_level(logging.INFO, "saslauth.front"):
        assert affinity.auto_pin(0, 2) is None
    assert moves == []
    message = caplog.records[0].getMessage()
    assert message.startswith("pin_fronts: auto: front 1 not pinned: cannot read /nonexistent/")


def test_auto_that_cannot_pin_does_not_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(pid: int, cpus: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(os, "sched_setaffinity", refuse)
    assert affinity.auto_pin(0, 2) is None


def test_watching_starts_and_stops_the_watcher(tmp_path: Path) -> None:
    path = tmp_path / "schedstat"
    _write(path, Schedstat(1, 2, 3))
    watcher = affinity.Watcher(0, 2, 0, {0, 1}, os.open(path, os.O_RDONLY))
    seen: list[bool] = []

    async def main() -> str:
        seen.append(watcher._timer is not None)
        return "done"

    assert asyncio.run(affinity.watching(watcher, main())) == "done"
    assert seen == [True] and watcher._timer is None
    assert asyncio.run(affinity.watching(None, main())) == "done"


def test_pin_follows_the_mode(moves: list[set[int]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert affinity.pin(False, 1, 2) is None and moves == []
    assert affinity.pin(True, 1, 2) is None and moves == [{1}]  # pinned, never watched
    watcher = affinity.pin("auto", 1, 2)
    try:
        assert watcher is not None and watcher.cpu == 1 and watcher.name == "front 2 of 2"
        assert moves == [{1}, {1}]
    finally:
        if watcher is not None:
            watcher.stop()
