#!/usr/bin/env python3
"""CPU per login of each saslauth process under authbench load, read from /proc.

Starts ``saslauth serve`` on a generated ``{PLAIN}`` passwd-file (1,000 users), drives it with
authbench (50 connections, one request in flight each, a new ``rip`` per request) for
``--seconds`` after a one-second warm-up, and prints for every front and the verifier its user
and system CPU microseconds per login and its context switches per login (``/proc/PID/stat``
and ``/proc/PID/status``, read before and after).  With several ``--src`` trees (a worktree of
another commit, say) it alternates between them ``--pairs`` times and prints the medians and
each pair's change: a before/after that holds still better than a ratio to Dovecot, whose own
figure moves with the machine's load.  Throughput is printed too, but on a shared machine CPU
per login is the steadier of the two.

    git worktree add /tmp/before HEAD~3
    python3 bench/process_cpu.py --src /tmp/before/src --src src --pairs 5
"""

# ruff: noqa: E402
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "src"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench.run import DEFAULT_AUTHBENCH_BIN, build_authbench, find_authbench_src
from tests.fixtures.ports import public_dir
from tests.fixtures.saslauth import start_saslauth, write_config

TICK = 100  # clock ticks per second of /proc/PID/stat (USER_HZ)


@dataclass(frozen=True)
class Counters:
    user: int  # clock ticks
    system: int
    voluntary: int  # context switches
    involuntary: int


def counters(pid: int) -> Counters:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    status = dict(
        line.split(":\t", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if "ctxt_switches" in line
    )
    return Counters(
        int(fields[11]),
        int(fields[12]),
        int(status["voluntary_ctxt_switches"]),
        int(status["nonvoluntary_ctxt_switches"]),
    )


@dataclass(frozen=True)
class Measured:
    src: str
    logins_per_s: float
    # role -> (user µs, system µs, voluntary, involuntary switches), each per login
    per_login: dict[str, tuple[float, float, float, float]]

    @property
    def cpu_us(self) -> float:
        return sum(user + system for user, system, _, _ in self.per_login.values())

    def line(self) -> str:
        roles = ", ".join(
            f"{role} {user:.1f}+{system:.1f} (switches {vol:.3f}/{invol:.3f})"
            for role, (user, system, vol, invol) in self.per_login.items()
        )
        return (
            f"{self.src}: {self.logins_per_s:,.0f} logins/s, CPU µs per login {self.cpu_us:.1f}"
            f" (user+system, voluntary/involuntary switches per login: {roles})"
        )


def measure(src: Path, work: Path, args: argparse.Namespace) -> Measured:
    config = write_config(work, work / "users", extra=args.extra)
    daemon = start_saslauth(config, work / "auth", python=args.python, src=src)
    try:
        kids = daemon.wait_children()
        bench = [str(DEFAULT_AUTHBENCH_BIN), "-s", daemon.address, "-f", str(work / "creds"),
                 "-c", str(args.conns), "-d", "1", "-w", "0", "-r"]  # fmt: skip
        subprocess.run([*bench, "-t", "1"], capture_output=True, check=True)  # warm-up
        before = {role: counters(pid) for role, pid in kids.items()}
        done = subprocess.run(
            [*bench, "-t", str(args.seconds)], capture_output=True, text=True, check=True
        )
        after = {role: counters(pid) for role, pid in kids.items()}
    finally:
        daemon.stop()
    result = json.loads(done.stdout.strip().splitlines()[-1])
    logins = result["ok"] + result["fail"]
    if result["fail"] or result["other"] or result["closed"]:
        raise SystemExit(f"unexpected replies from {src}: {result}")
    per_login = {}
    for role in kids:
        b, a = before[role], after[role]
        per_login[role] = (
            (a.user - b.user) / TICK / logins * 1e6,
            (a.system - b.system) / TICK / logins * 1e6,
            (a.voluntary - b.voluntary) / logins,
            (a.involuntary - b.involuntary) / logins,
        )
    return Measured(str(src), result["auth_per_s"], per_login)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--src", type=Path, action="append", help="a src/ tree (repeat to alternate)")
    p.add_argument("--pairs", type=int, default=3, help="rounds through the trees")
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--extra", default="", help="extra YAML appended to the saslauth config")
    p.add_argument("--python", default=sys.executable, help="the interpreter saslauth runs on")
    args = p.parse_args()
    trees = [tree.resolve() for tree in args.src or [REPO / "src"]]
    build_authbench(find_authbench_src(None), DEFAULT_AUTHBENCH_BIN)
    work = Path(public_dir("saslcpu-"))
    (work / "users").write_text("".join(f"user{i}:{{PLAIN}}pw{i}\n" for i in range(1000)))
    (work / "creds").write_text("".join(f"user{i}:pw{i}\n" for i in range(1000)))
    runs: list[list[Measured]] = [[] for _ in trees]  # by position: a tree may come twice
    for _ in range(args.pairs):
        for index, tree in enumerate(trees):
            measured = measure(tree, work, args)
            runs[index].append(measured)
            print(measured.line(), flush=True)
    print("== medians")
    for tree, measured_runs in zip(trees, runs, strict=True):
        rate = statistics.median(m.logins_per_s for m in measured_runs)
        cpu = statistics.median(m.cpu_us for m in measured_runs)
        print(f"{tree}: {rate:,.0f} logins/s, CPU µs per login {cpu:.1f}")
    if len(trees) == 2:
        first, second = runs
        changes = [100 * (b.cpu_us / a.cpu_us - 1) for a, b in zip(first, second, strict=True)]
        print(
            "CPU per login, second tree against the first, pair by pair: "
            + ", ".join(f"{change:+.1f}%" for change in changes)
            + f" (median {statistics.median(changes):+.1f}%)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
