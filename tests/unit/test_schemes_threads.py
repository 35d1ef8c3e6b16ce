"""CPU-heavy verifications release the GIL, so a thread pool scales them across cores.

Two checks.  The robust one: while another thread verifies an expensive hash, this thread
keeps running Python code (with the GIL held for the whole C call, it would stall for the
whole call).  The throughput one: two threads verify SHA512-CRYPT faster than one; it needs
two idle-ish cores, so it is retried and skipped on a single core.
``scripts/bench_schemes.py`` measures the same thing in more detail.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from saslauth import schemes


def _longest_stall(stored: str) -> tuple[float, float]:
    """(duration of verify() in another thread, longest gap between our loop iterations)."""
    took = 0.0

    def work() -> None:
        nonlocal took
        t0 = time.perf_counter()
        assert schemes.verify(b"secret", stored)
        took = time.perf_counter() - t0

    worker = threading.Thread(target=work)
    gap = 0.0
    last = time.perf_counter()
    worker.start()
    while worker.is_alive():
        now = time.perf_counter()
        gap = max(gap, now - last)
        last = now
    gap = max(gap, time.perf_counter() - last)  # the worker may finish while we wait
    worker.join()
    return took, gap


@pytest.mark.parametrize(
    ("scheme", "rounds"),
    [("SHA512-CRYPT", 300_000), ("BLF-CRYPT", 10), ("PBKDF2", 300_000), ("SCRAM-SHA-256", 200_000)],
)
def test_expensive_verify_releases_the_gil(scheme: str, rounds: int) -> None:
    stored = schemes.generate(scheme, b"secret", rounds=rounds)
    assert not schemes.is_cheap(stored)
    took, gap = _longest_stall(stored)
    assert took > 0.03, "hash too cheap to show anything"
    assert gap < took / 2, f"main thread stalled {gap:.3f}s during a {took:.3f}s verify"


def test_argon2_verify_releases_the_gil() -> None:
    stored = (
        "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$iGzD7UcaApd/LYXy168hdw$J53QHtdqDy+q1drdGj/HVAJ1PY"
        "Nazqpu2ydILTz1K7A"
    )
    took, gap = _longest_stall(stored)
    assert gap < took / 2


def _rate(stored: str, threads: int, seconds: float) -> float:
    deadline = time.perf_counter() + seconds

    def loop() -> int:
        n = 0
        while time.perf_counter() < deadline:
            assert schemes.verify(b"secret", stored)
            n += 1
        return n

    with ThreadPoolExecutor(threads) as pool:
        return sum(f.result() for f in [pool.submit(loop) for _ in range(threads)]) / seconds


def _machine_busy_seconds() -> float:
    """CPU seconds all processes on this machine have used (from /proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs at least 2 CPUs")
def test_two_threads_verify_sha512_crypt_faster() -> None:
    stored = schemes.generate("SHA512-CRYPT", b"secret")
    best = 0.0
    others = 0.0
    # Up to 5 tries, the best counts: this VM's vCPUs slow down now and then from the host's
    # load, which no counter here shows (one CI run in four today got 1.22x on 3 tries).
    for _ in range(5):
        wall0, busy0, own0 = time.perf_counter(), _machine_busy_seconds(), sum(os.times()[:2])
        one, two = _rate(stored, 1, 0.4), _rate(stored, 2, 0.4)
        wall = time.perf_counter() - wall0
        own = sum(os.times()[:2]) - own0
        others = max(0.0, _machine_busy_seconds() - busy0 - own) / wall
        best = max(best, two / one)
        if best > 1.3:
            return
    if others > 0.3:
        # A throughput comparison needs the second core; the GIL tests above still ran.
        pytest.skip(f"other processes used {others:.1f} cores meanwhile: no free second core")
    assert best > 1.3, f"2 threads only {best:.2f}x faster than 1 on an otherwise idle machine"
