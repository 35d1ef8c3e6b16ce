"""``bench/process_cpu.py``: the per-process CPU measure still runs end to end (CI-sized)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.fixtures.saslauth import REPO

pytestmark = [pytest.mark.slow]

AUTHBENCH_SRC = REPO.parent / "shared" / "tools" / "authbench.c"


def test_process_cpu_smoke() -> None:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler (cc) to build authbench (apt-get install gcc)")
    if not AUTHBENCH_SRC.is_file():
        pytest.skip(f"authbench source not found at {AUTHBENCH_SRC}")
    src = str(REPO / "src")
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "process_cpu.py"), "--src", src, "--src", src,
         "--pairs", "1", "--seconds", "1", "--conns", "4"],
        cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    output = f"--- stdout:\n{done.stdout}\n--- stderr:\n{done.stderr}"
    assert done.returncode == 0, output
    line = r"^\S+: ([\d,]+) logins/s, CPU µs per login (\d+\.\d) \((.*)\)$"
    runs = re.findall(line, done.stdout, re.M)
    assert len(runs) == 2, output
    for rate, cpu, roles in runs:
        assert int(rate.replace(",", "")) > 0 and float(cpu) > 0, output
        assert "verifier " in roles and "front " in roles, output
    assert re.search(r"pair by pair: [+-]\d+\.\d% \(median [+-]\d+\.\d%\)", done.stdout), output
