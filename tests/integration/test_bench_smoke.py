"""``bench/run.py --smoke``: the benchmark harness still runs end to end (CI-sized)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.dovecot import dovecot_skip_reason
from tests.fixtures.saslauth import REPO

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

RUN = REPO / "bench" / "run.py"
AUTHBENCH_SRC = REPO.parent / "shared" / "tools" / "authbench.c"


def _skip_reason() -> str | None:
    if shutil.which("cc") is None:
        return "no C compiler (cc) to build authbench (apt-get install gcc)"
    if not AUTHBENCH_SRC.is_file():
        return f"authbench source not found at {AUTHBENCH_SRC}"
    return dovecot_skip_reason()


def test_bench_smoke(tmp_path: Path) -> None:
    reason = _skip_reason()
    if reason is not None:
        pytest.skip(reason)
    env = dict(os.environ, PYTHONPATH=f"{REPO / 'src'}{os.pathsep}{REPO}")
    done = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--results-dir", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    output = f"--- stdout:\n{done.stdout}\n--- stderr:\n{done.stderr}"
    assert done.returncode == 0, output
    assert re.search(r"ratio saslauth/dovecot: throughput \d+\.\d\dx\s+p99 \d+\.\d\dx", done.stdout)
    replies = dict(re.findall(r"^\s*(dovecot|saslauth)\s+replies: (.*)$", done.stdout, re.M))
    assert set(replies) == {"dovecot", "saslauth"}, output
    for server, line in replies.items():
        counts = dict(re.findall(r"(\w+)=(\d+)", line))
        assert counts["FAIL"] == "0", f"{server}: {line}\n{output}"
        assert counts["other"] == "0", f"{server}: {line}\n{output}"
        assert int(counts["OK"]) > 0, f"{server}: {line}\n{output}"
    # the raw results agree with the table
    (result_file,) = tmp_path.glob("*.json")
    data = json.loads(result_file.read_text())
    (case,) = data["cases"]
    assert case["case"] == "plain"
    assert {run["server"] for run in case["runs"]} == {"dovecot", "saslauth"}
    assert all(run["fail"] == 0 and run["ok"] > 0 for run in case["runs"])
