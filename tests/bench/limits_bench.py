"""Measure the limiter with authbench against a real daemon (not a test; run by hand).

    cc -O2 -o /tmp/authbench /work/shared/tools/authbench.c
    PYTHONPATH=src python3 -m tests.bench.limits_bench /tmp/authbench

Three runs, each on a fresh daemon with failure_delay 2s and PLAIN-stored passwords:
legitimate logins with limits off and on (every request its own rip), then 20 colleagues
logging in from one address (127.0.0.1) while an attacker there guesses (10 connections).
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.fixtures.ports import public_tmpdir
from tests.fixtures.saslauth import running, write_config


def bench(authbench: str, socket: Path, creds: Path, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [authbench, "-s", str(socket), "-f", str(creds), *args],
        capture_output=True, text=True, check=True, timeout=120,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> int:
    authbench = sys.argv[1] if len(sys.argv) > 1 else "/tmp/authbench"
    with public_tmpdir() as directory:
        users = directory / "users"
        users.write_text("".join(f"u{i}:{{PLAIN}}pw{i}\n" for i in range(20)))
        good = directory / "good"
        good.write_text("".join(f"u{i}:pw{i}\n" for i in range(20)))
        bad = directory / "bad"
        bad.write_text("".join(f"target{i % 3}:guess{i}\n" for i in range(1000)))
        for label, extra in (("limits off", ""), ("limits on", "limits: {}\n")):
            config = write_config(directory, users, failure_delay="2s", extra=extra)
            with running(config, directory / "auth") as daemon:
                r = bench(authbench, daemon.socket, good, "-c", "50", "-t", "5", "-r")
                print(f"{label}: legit logins {json.dumps(r)}")
        config = write_config(directory, users, failure_delay="2s", extra="limits: {}\n")
        with running(config, directory / "auth") as daemon, ThreadPoolExecutor(2) as pool:
            attack = pool.submit(bench, authbench, daemon.socket, bad, "-c", "10", "-t", "20")
            legit = pool.submit(bench, authbench, daemon.socket, good, "-c", "20", "-t", "20")
            print(f"shared address, attacker: {json.dumps(attack.result())}")
            print(f"shared address, colleagues: {json.dumps(legit.result())}")
            log = daemon.log_text()
            print("attacker attempts refused:", log.count("limited=refused:"),
                  "delayed:", log.count("limited=delay:"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
