#!/usr/bin/env python3
"""Profile saslauth's front and verifier under authbench load with py-spy.

Starts ``saslauth serve`` on a generated ``{PLAIN}`` (or SHA512-CRYPT) passwd-file, drives it
with authbench for ``--seconds`` and samples both children with ``py-spy record -f raw``;
prints the top functions by own time (self) and by inclusive time per process.
Needs py-spy (``pip install py-spy``) and root (py-spy attaches with ptrace).

    python3 bench/profile.py --scheme PLAIN --seconds 8
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "src"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench.run import DEFAULT_AUTHBENCH_BIN, build_authbench, find_authbench_src  # noqa: E402
from tests.fixtures.ports import public_dir  # noqa: E402
from tests.fixtures.saslauth import start_saslauth, write_config  # noqa: E402


def summarise(raw: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " (" + f.rsplit("/", 1)[-1] for f in stack.split(";")]
        frames = [f.split(":")[0] + ")" if ":" in f else f for f in frames]
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    out = [f"   {total} samples"]
    out.append("   own time:")
    out += [f"     {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    out.append("   inclusive time:")
    out += [f"     {100 * n / total:5.1f}%  {f}" for f, n in incl.most_common(top)]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scheme", default="PLAIN", choices=("PLAIN", "SHA512-CRYPT"))
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--extra", default="", help="extra YAML appended to the saslauth config")
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = p.parse_args()
    src = find_authbench_src(None)
    build_authbench(src, DEFAULT_AUTHBENCH_BIN)
    work = Path(public_dir("saslprof-"))
    passwd, creds = work / "users", work / "creds"
    lines, cred_lines = [], []
    for i in range(args.users):
        pw = f"pw{i}"
        if args.scheme == "PLAIN":
            stored = "{PLAIN}" + pw
        else:
            from saslauth import schemes

            stored = schemes.generate("SHA512-CRYPT", pw.encode(), rounds=5000)
        lines.append(f"user{i}:{stored}")
        cred_lines.append(f"user{i}:{pw}")
    passwd.write_text("\n".join(lines) + "\n")
    creds.write_text("\n".join(cred_lines) + "\n")
    config = write_config(work, passwd, extra=args.extra)
    daemon = start_saslauth(config, work / "auth")
    try:
        kids = daemon.wait_children()
        spies = {}
        for role, pid in kids.items():
            out = work / f"spy-{role}.txt"
            spies[role] = (out, subprocess.Popen(
                ["py-spy", "record", "-p", str(pid), "-f", "raw", "-o", str(out),
                 "-d", str(int(args.seconds)), "-r", str(args.rate), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
        time.sleep(0.5)
        bench = subprocess.run(
            [str(DEFAULT_AUTHBENCH_BIN), "-s", daemon.address, "-f", str(creds),
             "-c", str(args.conns), "-t", str(args.seconds), "-w", "0", "-r"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        print("authbench:", bench.stdout.strip().splitlines()[-1] if bench.stdout else bench.stderr)
        for role, (out, proc) in spies.items():
            proc.wait(args.seconds + 30)
            print(f"== {role} (pid {kids[role]})")
            print(summarise(out, args.top) if out.exists() else "   no py-spy output")
    finally:
        daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
