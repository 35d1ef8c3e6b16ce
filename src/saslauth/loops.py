"""Which asyncio event loop runs the front and the verifier: uvloop when installed, or asyncio's.

``event_loop: auto`` (the default) takes uvloop when it can be imported (the optional extra
``saslauth[uvloop]``), ``uvloop`` insists on it, ``asyncio`` never uses it.  Both loops are
tested (tests/integration/test_perf_daemon.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("saslauth")

T = TypeVar("T")


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for ``choice`` (None: asyncio's default loop)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("event_loop: uvloop is configured but not installed") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Callable[[], Coroutine[Any, Any, T]], choice: str = "auto") -> T:
    """``asyncio.run(main())`` on the chosen loop."""
    factory = loop_factory(choice)
    if factory is None:
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


def name() -> str:
    """The running loop's kind, for the startup log line."""
    loop = asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
