"""``pin_fronts``: each front process runs on one CPU of its own.

Front *i* of *N* takes the *i*-th CPU (round-robin) of those the daemon may use — the set it
was started with, so systemd's ``CPUAffinity=`` or ``taskset`` still choose which.  Only the
fronts are pinned: the master and the verifier (whose threads hash on every core) stay free.
A front that cannot be pinned says so and serves unpinned: this never stops the daemon.

``true`` pins for good.  ``auto`` (the default) pins only when every front gets a CPU of its
own, and a :class:`Watcher` lets the front leave a CPU that other work crowds and come back
later (:mod:`saslauth.pinwatch` decides when).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from saslauth import pinwatch

log = logging.getLogger("saslauth.front")
SCHEDSTAT = "/proc/self/schedstat"
T = TypeVar("T")


def cpu_for(index: int, allowed: Iterable[int]) -> int:
    """The CPU of front ``index`` (0-based): the allowed CPUs in order, round-robin."""
    cpus = sorted(allowed)
    if not cpus:
        raise ValueError("no CPU allowed")
    return cpus[index % len(cpus)]


def pin(mode: bool | str, index: int, count: int) -> Watcher | None:
    """Front ``index`` of ``count`` as ``pin_fronts: mode`` asks: pinned for good (True), pinned
    and watched ("auto": the Watcher, to run while the front serves), or left alone."""
    if mode == "auto":
        return auto_pin(index, count)
    if mode is True:
        pin_front(index, count)
    return None


def pin_front(index: int, count: int, allowed: set[int] | None = None) -> int | None:
    """Pin the calling process (front ``index`` of ``count``) to its CPU among ``allowed``
    (default: the CPUs it may use now); the CPU, or None."""
    try:
        if allowed is None:
            allowed = os.sched_getaffinity(0)
        cpu = cpu_for(index, allowed)
        os.sched_setaffinity(0, {cpu})
    except (OSError, ValueError) as exc:
        log.warning(
            "pin_fronts: cannot pin front %d of %d to a CPU (%s); it runs on any",
            index + 1, count, exc,
        )  # fmt: skip
        return None
    shared = " (more fronts than CPUs: some share one)" if count > len(allowed) else ""
    log.info("front %d of %d pinned to CPU %d%s", index + 1, count, cpu, shared)
    return cpu


class Watcher:
    """Front ``index``'s :class:`~saslauth.pinwatch.PinWatch`, read every INTERVAL seconds on
    the running loop; it moves the front between ``cpu`` and every CPU of ``allowed``."""

    def __init__(
        self,
        index: int,
        count: int,
        cpu: int,
        allowed: set[int],
        fd: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cpu, self.allowed = cpu, allowed
        self.name = f"front {index + 1} of {count}"
        self._fd, self._clock = fd, clock
        self._watch = pinwatch.PinWatch(clock(), self._read())
        self._timer: asyncio.TimerHandle | None = None

    def _read(self) -> pinwatch.Schedstat:
        return pinwatch.parse_schedstat(os.pread(self._fd, 256, 0).decode("ascii"))

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(pinwatch.INTERVAL, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _tick(self) -> None:
        try:
            decision = self._watch.observe(self._clock(), self._read())
            if decision is not None:
                self._move(decision)
        except (OSError, ValueError) as exc:
            log.warning("pin_fronts: %s stops watching CPU %d (%s)", self.name, self.cpu, exc)
            self.stop()
            return
        self.start()

    def _move(self, decision: pinwatch.Decision) -> None:
        if decision.move is pinwatch.Move.RETURN:
            os.sched_setaffinity(0, {self.cpu})
            log.info("%s pinned to CPU %d again", self.name, self.cpu)
            return
        os.sched_setaffinity(0, self.allowed)
        log.info(
            "%s leaves CPU %d: other work crowds it (for %.0f s it ran %.0f%% of the time it was"
            " ready to, waiting %.2f ms per turn on average); it runs on any CPU and tries CPU %d"
            " again in %.0f s",
            self.name,
            self.cpu,
            pinwatch.STREAK * pinwatch.INTERVAL,
            100 * decision.share,
            decision.mean_wait_ns / 1e6,
            self.cpu,
            decision.retry_in,
        )


def auto_pin(index: int, count: int) -> Watcher | None:
    """``pin_fronts: auto``: pin front ``index`` of ``count`` and watch its CPU, when each
    front gets a CPU of its own and the kernel keeps scheduler statistics; else None."""
    try:
        allowed = os.sched_getaffinity(0)
    except OSError as exc:
        log.debug("pin_fronts: auto: front %d not pinned (%s)", index + 1, exc)
        return None
    if not 2 <= count <= len(allowed):  # one front has no other to keep away from
        log.debug("pin_fronts: auto: %d front(s) on %d CPU(s): not pinned", count, len(allowed))
        return None
    try:
        fd = os.open(SCHEDSTAT, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:  # a kernel without CONFIG_SCHED_INFO: no way to see crowding
        log.info("pin_fronts: auto: front %d not pinned: cannot read %s (%s)", index + 1,
                 SCHEDSTAT, exc)  # fmt: skip
        return None
    try:
        watcher = Watcher(index, count, cpu_for(index, allowed), allowed, fd)
    except (OSError, ValueError) as exc:
        os.close(fd)
        log.info("pin_fronts: auto: front %d not pinned: %s unreadable (%s)", index + 1,
                 SCHEDSTAT, exc)  # fmt: skip
        return None
    if pin_front(index, count, allowed) is None:  # the same set: the Watcher's CPU
        watcher.stop()
        return None
    return watcher


async def watching(watcher: Watcher | None, main: Awaitable[T]) -> T:
    """Await ``main`` with ``watcher`` (if any) watching the front's CPU meanwhile."""
    if watcher is None:
        return await main
    watcher.start()
    try:
        return await main
    finally:
        watcher.stop()
