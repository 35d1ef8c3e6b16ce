"""The front's batched log stream: one write per loop turn, write-through outside a loop."""

from __future__ import annotations

import asyncio
import io
import logging
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
