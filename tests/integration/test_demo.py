"""The README's first command, as a new user would run it: the embedded default just works.

A copy of ``examples/`` (so no ``run/`` directory exists yet) is served with
``saslauth serve --config examples/saslauth.yaml``, and the documented demo login succeeds with
``saslauth-test -c examples/saslauth.yaml``.  Accounts the configuration names but the host lacks
are reported with file and line before anything starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.ports import public_tmpdir
from tests.fixtures.saslauth import REPO, running


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_demo_from_the_readme() -> None:
    with public_tmpdir() as work:
        examples = work / "examples"
        shutil.copytree(REPO / "examples", examples, ignore=shutil.ignore_patterns("run"))
        config = examples / "saslauth.yaml"
        assert _run("-m", "saslauth", "check-config", "--config", str(config)).returncode == 0
        with running(config, examples / "run" / "auth"):
            ok = _run("-m", "saslauth.testclient", "-c", str(config),
                      "-u", "demo@example.org", "-p", "demo")  # fmt: skip
            assert (ok.returncode, ok.stdout.strip()) == (0, "OK user=demo@example.org")
            bad = _run("-m", "saslauth.testclient", "-c", str(config),
                       "-u", "demo@example.org", "-p", "nope")  # fmt: skip
            assert bad.returncode == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="accounts are only checked when started as root")
def test_missing_accounts_named_with_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "s.yaml"
    config.write_text(
        "user: nosuchuser-sl\n"
        "verifier:\n  user: nosuchverifier-sl\n"
        f"listen:\n  - path: {tmp_path}/auth\n    group: nosuchgroup-sl\n"
        f"passdb:\n  - driver: passwd-file\n    path: {tmp_path}/users\n"
    )
    for command in ("serve", "check-config"):
        result = _run("-m", "saslauth", command, "--config", str(config))
        out = result.stdout + result.stderr
        assert result.returncode == 1
        assert f"{config}:1: user: no such user 'nosuchuser-sl' on this host (create it" in out
        assert f"{config}:3: verifier.user: no such user 'nosuchverifier-sl'" in out
        assert f"{config}:6: listen.0.group: no such group 'nosuchgroup-sl'" in out
    assert not (tmp_path / "auth").exists()  # nothing was started
