"""The front's batched log stream: one write per loop turn, write-through outside a loop."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
from collections.abc import Iterator

import pytest

from saslauth import logbatch


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def stream() -> Iterator[CountingStream]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    target = CountingStream()
    root.handlers[:] = [logging.StreamHandler(target)]
    root.setLevel(logging.INFO)
    yield target
    root.handlers[:], level = saved
    root.setLevel(level)


@contextlib.contextmanager
def _front_logging() -> Iterator[
    tuple[CountingStream, list[logbatch.BatchedStream], logging.Logger, logbatch.LineWriter]
]:
    """Logging as the front sets it up (logs.setup, then logbatch.install), writing to a
    CountingStream; the auth logger and a LineWriter for it.  The root logger is put back."""
    from saslauth import logs

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    log = logging.getLogger("saslauth.auth")
    try:
        logs.setup("info", "front")
        target = CountingStream()
        root.handlers[0].setStream(target)  # type: ignore[attr-defined]
        yield target, logbatch.install(), log, logbatch.LineWriter(log)
    finally:
        log.handlers.clear()
        root.handlers[:], level = saved
        root.setLevel(level)


def test_one_write_per_loop_turn(stream: CountingStream) -> None:
    streams = logbatch.install()
    assert len(streams) == 1 and logbatch.install() == []  # idempotent
    log = logging.getLogger("saslauth.test")
    log.info("before the loop")  # no loop: written at once
    assert (stream.writes, stream.getvalue()) == (1, "before the loop\n")

    async def turn() -> None:
        for i in range(100):
            log.info("line %d", i)
        assert stream.writes == 1  # nothing yet: written at the end of this turn
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert stream.writes == 2
        log.info("last")

    asyncio.run(turn())
    logbatch.drain(streams)
    lines = stream.getvalue().splitlines()
    assert lines == ["before the loop", *(f"line {i}" for i in range(100)), "last"]


@pytest.mark.parametrize("journal", [False, True])
def test_line_writer_writes_exactly_what_logging_would(
    monkeypatch: pytest.MonkeyPatch, journal: bool
) -> None:
    """The auth line skips the LogRecord, so it must render the same bytes as the handler."""
    from saslauth import logs

    if journal:
        monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    else:
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    root = logging.getLogger()
    with _front_logging() as (target, streams, log, writer):
        now = [0.0]
        monkeypatch.setattr("time.time", lambda: now[0])
        lines = []
        for now[0], message in (
            (1767225600.25, "auth: result=ok user=alice"),
            (1767225601.999, 'auth: user="a\nb"'),
        ):
            for emit in (writer, lambda text: log.info("%s", text)):
                emit(message)
                logbatch.drain(streams)
                lines.append(target.getvalue())
                target.seek(0)
                target.truncate()
        assert len(lines) == 4 and lines[0] == lines[1] and lines[2] == lines[3]
        assert ("auth: result=ok user=alice\n" in lines[0]) and ",250 " not in lines[2]
        if not journal:
            tail = f",250 INFO front[{os.getpid()}]: auth: result=ok user=alice\n"
            assert lines[0].endswith(tail)
            assert ",999 INFO" in lines[2]
            monkeypatch.setattr(logs, "_pid", 4242)  # as after a fork: the new pid, at once
            writer("forked")
            logbatch.drain(streams)
            assert target.getvalue().endswith(",999 INFO front[4242]: forked\n")
            target.seek(0)
            target.truncate()

        # Any other logging set-up (a capture handler, a level, a formatter) takes the
        # ordinary route.
        handler = root.handlers[0]
        handler.setFormatter(logging.Formatter("custom %(message)s"))
        writer("reformatted")
        logbatch.drain(streams)
        assert target.getvalue().endswith("custom reformatted\n")
        extra = CountingStream()
        log.addHandler(logging.StreamHandler(extra))
        writer("seen by both")
        log.handlers.clear()
        assert extra.getvalue() == "seen by both\n"
        root.setLevel(logging.WARNING)
        writer("not at WARNING")
        logbatch.drain(streams)
        assert "not at WARNING" not in target.getvalue()
        assert target.getvalue().endswith("seen by both\n")


def test_line_writer_checks_the_route_once_per_loop_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first line of a loop turn is routed with every check; the others of that turn go
    the same way, and a change made meanwhile counts from the next turn's first line on."""
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    root = logging.getLogger()
    with _front_logging() as (target, streams, log, writer):
        extra = CountingStream()

        async def turns() -> None:
            writer("one")
            writer("two")
            assert [part.split(": ", 1)[1] for part in streams[0].parts] == ["one\n", "two\n"]
            log.addHandler(logging.StreamHandler(extra))
            writer("three")  # this turn's route still
            await asyncio.sleep(0)  # the turn ends: the batch is written
            assert target.writes == 1 and extra.getvalue() == ""
            logging.getLogger("saslauth.other").warning("other")  # a new batch begins
            writer("four")  # checked again all the same: the new handler sees it
            log.handlers.clear()
            await asyncio.sleep(0)
            writer("five")
            root.setLevel(logging.WARNING)
            writer("six")  # the level is checked on every line

        asyncio.run(turns())
        logbatch.drain(streams)
    lines = [line.split(": ", 1)[1] for line in target.getvalue().splitlines()]
    assert lines == ["one", "two", "three", "other", "four", "five"]
    assert extra.getvalue() == "four\n"
