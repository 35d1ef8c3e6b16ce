"""Log lines written once per event-loop turn instead of one ``write(2)`` per line.

The front logs one ``auth:`` line per attempt; under load that write was a third of the
front's system calls per request.  :func:`install` swaps the stream of every handler of the
root logger for a :class:`BatchedStream`, which collects what the handler writes and hands it
to the real stream in one write at the end of the current loop turn (``call_soon``).  Outside
a running loop (start-up, shutdown) it writes through at once; :func:`drain` flushes what is
left.  At most one loop turn of lines can be lost if the process is killed.

:class:`LineWriter` goes one step further for the ``auth:`` line: it renders the line itself
(:func:`saslauth.logs.renderer`) and appends it to the batched stream, skipping the LogRecord.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TextIO

from saslauth import logs


class BatchedStream:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.parts: list[str] = []  # written since the last drain
        self.scheduled = False  # a drain is due at the end of this loop turn
        self.drains = 0  # drain() calls so far: which batch the parts belong to

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        if self.scheduled or not self.parts:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.drain()
            return
        self.scheduled = True
        loop.call_soon(self.drain)

    def drain(self) -> None:
        self.scheduled = False
        self.drains += 1
        if not self.parts:
            return
        text = "".join(self.parts)
        self.parts.clear()
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # stderr gone (closed pipe): nothing sensible is left to do with log lines


def install() -> list[BatchedStream]:
    """Batch the writes of the root logger's stream handlers; returns the new streams."""
    streams = []
    for handler in logging.getLogger().handlers:
        # exactly logs.setup's kind: subclasses (file handlers, test capture) keep their stream
        if type(handler) is logging.StreamHandler and not isinstance(handler.stream, BatchedStream):
            batched = BatchedStream(handler.stream)
            handler.setStream(batched)
            streams.append(batched)
    return streams


def drain(streams: list[BatchedStream]) -> None:
    for stream in streams:
        stream.drain()


class LineWriter:
    """``writer(message)`` logs ``message`` on ``logger`` at ``level``, like
    ``logger.log(level, "%s", message)`` but without a LogRecord when it can.

    The shortcut is taken only while logging is exactly as :func:`saslauth.logs.setup` and
    :func:`install` left it: the logger has no handlers or filters of its own and the root's one
    handler is the batched one :func:`saslauth.logs.setup` made.  Anything else (a test's capture
    handler, a handler added later) gets the ordinary call, so no line is ever lost or changed.
    The checks are made for the first line of each batch (loop turn); the level on every line
    (by the caller, for :meth:`write`).
    """

    __slots__ = ("_level", "_logger", "_route")

    def __init__(self, logger: logging.Logger, level: int = logging.INFO) -> None:
        self._logger = logger
        self._level = level
        # The stream and renderer the last line went to, and that stream's batch then: the
        # next lines of the same batch (the same loop turn) go there without the checks.
        self._route: tuple[BatchedStream, Callable[[int, str], str], int] | None = None

    def __call__(self, message: str) -> None:
        if self._logger.isEnabledFor(self._level):
            self.write(message)

    def write(self, message: str) -> None:
        """``self(message)`` when the caller knows the level is enabled (it checked)."""
        logger = self._logger
        route = self._route
        if route is not None:
            batched, rendering, batch = route
            if batched.scheduled and batched.drains == batch:
                batched.parts.append(rendering(self._level, message))
                return
        handlers = logging.root.handlers
        if len(handlers) == 1 and not logger.filters and _propagates_to_root(logger):
            handler = handlers[0]
            stream = getattr(handler, "stream", None)
            if type(stream) is BatchedStream and handler.level <= self._level:
                render = logs.renderer(handler)
                if render is not None and not handler.filters:
                    stream.write(render(self._level, message))
                    stream.flush()
                    self._route = (stream, render, stream.drains)
                    return
        self._route = None
        logger.log(self._level, "%s", message)


def _propagates_to_root(logger: logging.Logger) -> bool:
    """True when a record of ``logger`` reaches only the root's handlers."""
    node: logging.Logger | None = logger
    while node is not None and node is not logging.root:
        if node.handlers or not node.propagate:
            return False
        node = node.parent
    return True
