#!/usr/bin/env python3
"""Benchmark saslauth.schemes against Dovecot's ``doveadm pw -t``.

For SHA512-CRYPT, BLF-CRYPT (cost 5 and 10) and ARGON2ID (Dovecot's defaults) it prints
verifications per second with 1 and 2 threads (the GIL is released, so 2 threads should come
close to 2x on 2 idle cores), and the time one ``doveadm pw -t`` takes for the same hash.
``doveadm pw -t`` is a whole process per call, so its start-up cost is measured with a
``{PLAIN}`` hash and subtracted.

Usage: PYTHONPATH=src python3 scripts/bench_schemes.py [--seconds 2.0] [--calls 10]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from saslauth import schemes

PASSWORD = "secret"  # noqa: S105 - a benchmark password


def rate(stored: str, threads: int, seconds: float) -> float:
    """Verifications per second of ``stored`` with ``threads`` threads."""
    schemes.set_argon2_limit(max(threads, 2))
    deadline = time.perf_counter() + seconds

    def loop() -> int:
        n = 0
        while time.perf_counter() < deadline:
            if not schemes.verify(PASSWORD.encode(), stored):
                raise SystemExit(f"verify failed for {stored[:20]}...")
            n += 1
        return n

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(f.result() for f in [pool.submit(loop) for _ in range(threads)])
    return total / (time.perf_counter() - start)


def doveadm_seconds(stored: str, calls: int) -> float:
    """Median wall time of one ``doveadm pw -t`` process for ``stored``."""
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        done = subprocess.run(
            ["doveadm", "pw", "-t", stored, "-p", PASSWORD],
            capture_output=True,
            text=True,
            check=False,
        )
        times.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise SystemExit(f"doveadm pw -t failed: {done.stderr.strip()}")
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per throughput measurement")
    parser.add_argument("--calls", type=int, default=10, help="doveadm calls per hash")
    args = parser.parse_args()

    cases = [
        ("SHA512-CRYPT", schemes.generate("SHA512-CRYPT", PASSWORD.encode())),
        ("BLF-CRYPT cost 5", schemes.generate("BLF-CRYPT", PASSWORD.encode())),
        ("BLF-CRYPT cost 10", schemes.generate("BLF-CRYPT", PASSWORD.encode(), rounds=10)),
        ("ARGON2ID (m=64MiB,t=3)", schemes.generate("ARGON2ID", PASSWORD.encode())),
    ]
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    have_doveadm = shutil.which("doveadm") is not None
    baseline = 0.0
    if have_doveadm:
        baseline = doveadm_seconds("{PLAIN}secret", args.calls)
        print(f"doveadm pw -t baseline ({{PLAIN}}): {baseline * 1000:.1f} ms per process")
    else:
        print("doveadm not found: Dovecot column skipped")
    header = f"{'scheme':<24}{'1 thread/s':>12}{'2 threads/s':>13}{'speed-up':>10}"
    header += f"{'doveadm ms':>12}{'- baseline':>12}{'= Dovecot/s':>13}"
    print(header)
    for name, stored in cases:
        one = rate(stored, 1, args.seconds)
        two = rate(stored, 2, args.seconds)
        line = f"{name:<24}{one:>12.1f}{two:>13.1f}{two / one:>9.2f}x"
        if have_doveadm:
            calls = max(3, args.calls // 3) if "ARGON" in name or "10" in name else args.calls
            per_call = doveadm_seconds(stored, calls)
            net = per_call - baseline
            rate_dovecot = f"{1 / net:.1f}" if net > 0 else "n/a"
            line += f"{per_call * 1000:>12.1f}{net * 1000:>12.1f}{rate_dovecot:>13}"
        print(line, flush=True)
    schemes.set_argon2_limit(2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
