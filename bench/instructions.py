#!/usr/bin/env python3
"""Instructions per request of bench/front_cost.py or bench/verifier_cost.py, from callgrind.

Runs the script under ``valgrind --tool=callgrind`` twice, with ``--requests`` of 1,000 and of
3,000 and ``--repeat 1``, and prints the difference of the two instruction totals divided by
the difference in requests: start-up and import costs cancel out, and the figure does not
depend on the machine's load, so a before/after needs only one run of each (about a minute).
Needs valgrind (``apt-get install valgrind``).

    python3 bench/instructions.py bench/front_cost.py [--python PY] [--auth-log all]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

COUNTS = (1000, 3000)
_COLLECTED = re.compile(r"Collected : (\d+)")


def instructions(python: str, script: Path, requests: int, out: Path, extra: list[str]) -> int:
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         python, str(script), "--requests", str(requests), "--repeat", "1", *extra],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = _COLLECTED.search(done.stderr)
    if found is None:
        raise SystemExit(f"no instruction total from callgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("script", type=Path, help="bench/front_cost.py or bench/verifier_cost.py")
    p.add_argument("--python", default=sys.executable, help="the interpreter to count")
    args, extra = p.parse_known_args()  # the rest goes to the script (--auth-log all, say)
    with tempfile.TemporaryDirectory() as tmp:
        low, high = (
            instructions(args.python, args.script, count, Path(tmp) / f"cg.{count}", extra)
            for count in COUNTS
        )
    per_request = (high - low) / (COUNTS[1] - COUNTS[0])
    print(f"{per_request:,.0f} instructions per request ({args.script.name}, {args.python})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
