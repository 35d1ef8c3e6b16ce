"""``pin_fronts: true``: each front process runs on one CPU of its own (opt-in).

Front *i* of *N* takes the *i*-th CPU (round-robin) of those the daemon may use — the set it
was started with, so systemd's ``CPUAffinity=`` or ``taskset`` still choose which.  Only the
fronts are pinned: the master and the verifier (whose threads hash on every core) stay free.
A front that cannot be pinned says so and serves unpinned: this never stops the daemon.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

log = logging.getLogger("saslauth.front")


def cpu_for(index: int, allowed: Iterable[int]) -> int:
    """The CPU of front ``index`` (0-based): the allowed CPUs in order, round-robin."""
    cpus = sorted(allowed)
    if not cpus:
        raise ValueError("no CPU allowed")
    return cpus[index % len(cpus)]


def pin_front(index: int, count: int) -> int | None:
    """Pin the calling process (front ``index`` of ``count``) to its CPU; the CPU, or None."""
    try:
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
