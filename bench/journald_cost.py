#!/usr/bin/env python3
"""What the ``auth:`` lines cost when saslauth logs to journald, as it does under systemd.

Runs ``saslauth serve`` on a generated ``{PLAIN}`` passwd-file (1,000 users) four ways, in
alternation, ``--pairs`` times: its output to a file or to journald (through ``systemd-cat``,
with ``JOURNAL_STREAM`` set as systemd sets it, so the lines carry their ``<N>`` priority),
each with ``auth_log: failures`` (the default) and ``auth_log: all``.  authbench drives each
run (50 connections, one request in flight each, a new ``rip`` per request; every login
succeeds), and the CPU of all saslauth processes and of systemd-journald is read from
``/proc`` before and after.  Prints logins/s and CPU microseconds per login of both, and the
medians.

Needs root, cc and systemd's journald (Debian package ``systemd``).  Where no journald runs
(a container), a throwaway one is started and stopped again; on a systemd host the running
one is used, and its CPU then includes whatever else logs at the time.  journald's
per-service rate limit does not apply to these lines (they come from no systemd unit), so
every line is stored: what a unit with ``LogRateLimitIntervalSec=0`` would cost.

    python3 bench/journald_cost.py --pairs 3 --python /opt/debpy/bin/python
"""

# ruff: noqa: E402
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "src"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench.process_cpu import TICK, counters
from bench.run import DEFAULT_AUTHBENCH_BIN, build_authbench, find_authbench_src
from tests.fixtures.authclient import greets
from tests.fixtures.ports import group_members, public_dir
from tests.fixtures.saslauth import write_config

JOURNALD = Path("/lib/systemd/systemd-journald")
WAYS = (("file", "failures"), ("journal", "failures"), ("file", "all"), ("journal", "all"))


def running_journald() -> int | None:
    found = subprocess.run(["pgrep", "-x", "systemd-journal"], capture_output=True, text=True)
    pids = found.stdout.split()
    return int(pids[0]) if pids else None


def measure(
    work: Path, sink: str, auth_log: str, journald: int, args: argparse.Namespace
) -> tuple[float, float, float]:
    """(logins/s, saslauth CPU µs per login, journald CPU µs per login) of one run."""
    config = write_config(work, work / "users", extra=f"auth_log: {auth_log}\n")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), PYTHONUNBUFFERED="1")
    serve = [args.python, "-m", "saslauth", "serve", "--config", str(config)]
    if sink == "journal":
        env["JOURNAL_STREAM"] = "0:0"  # saslauth only asks whether it is set
        command = ["systemd-cat", "--level-prefix=true", "-t", "saslauth-bench", *serve]
        proc = subprocess.Popen(command, env=env, start_new_session=True)
    else:
        with (work / "saslauth.log").open("ab") as log:
            proc = subprocess.Popen(
                serve, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
    try:
        deadline = time.monotonic() + 20
        while not greets(work / "auth"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"saslauth did not start ({sink}, auth_log {auth_log})")
            time.sleep(0.05)
        time.sleep(1)  # every front and the verifier up
        pids = [*group_members(proc.pid), journald]
        bench = [str(DEFAULT_AUTHBENCH_BIN), "-s", str(work / "auth"), "-f", str(work / "creds"),
                 "-c", "50", "-d", "1", "-w", "0", "-r"]  # fmt: skip
        subprocess.run([*bench, "-t", "1"], capture_output=True, check=True)  # warm-up
        before = {pid: counters(pid) for pid in pids}
        done = subprocess.run(
            [*bench, "-t", str(args.seconds)], capture_output=True, text=True, check=True
        )
        after = {pid: counters(pid) for pid in pids}
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["fail"] or result["other"] or result["closed"]:
        raise SystemExit(f"unexpected replies: {result}")
    logins = int(result["ok"])

    def cpu(pid: int) -> float:
        ticks = after[pid].user - before[pid].user + after[pid].system - before[pid].system
        return ticks / TICK / logins * 1e6

    return float(result["auth_per_s"]), sum(cpu(p) for p in pids[:-1]), cpu(journald)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pairs", type=int, default=3, help="rounds through the four ways")
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--python", default=sys.executable, help="the interpreter saslauth runs on")
    args = p.parse_args()
    if os.geteuid() != 0 or not shutil.which("systemd-cat"):
        raise SystemExit("needs root and systemd's journald and systemd-cat (package systemd)")
    build_authbench(find_authbench_src(None), DEFAULT_AUTHBENCH_BIN)
    work = Path(public_dir("sasljournal-"))
    (work / "users").write_text("".join(f"user{i}:{{PLAIN}}pw{i}\n" for i in range(1000)))
    (work / "creds").write_text("".join(f"user{i}:pw{i}\n" for i in range(1000)))
    own = None
    journald = running_journald()
    if journald is None:
        if not JOURNALD.exists():
            raise SystemExit(f"no journald running and no {JOURNALD}")
        quiet = subprocess.DEVNULL
        own = subprocess.Popen([str(JOURNALD)], stdout=quiet, stderr=quiet)
        time.sleep(1)
        journald = own.pid
    runs: dict[tuple[str, str], list[tuple[float, float, float]]] = {way: [] for way in WAYS}
    try:
        for _ in range(args.pairs):
            for sink, auth_log in WAYS:
                got = measure(work, sink, auth_log, journald, args)
                runs[(sink, auth_log)].append(got)
                print(f"{sink:7} auth_log {auth_log:8}: {got[0]:8,.0f} logins/s, CPU µs per "
                      f"login: saslauth {got[1]:.1f}, journald {got[2]:.1f}", flush=True)
    finally:
        if own is not None:
            own.terminate()
            own.wait(timeout=30)
    print("== medians")
    for (sink, auth_log), measured in runs.items():
        rate, ours, theirs = (statistics.median(m[i] for m in measured) for i in range(3))
        print(f"{sink:7} auth_log {auth_log:8}: {rate:8,.0f} logins/s, CPU µs per login: "
              f"saslauth {ours:.1f}, journald {theirs:.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
