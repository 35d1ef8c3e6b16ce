"""examples/fail2ban: the filter run by the real fail2ban-regex over real daemon output."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.fixtures.limits import LIMITS, Conn, users_file
from tests.fixtures.ports import public_tmpdir
from tests.fixtures.saslauth import REPO, running, write_config

FILTER = REPO / "examples" / "fail2ban" / "filter.d" / "saslauth.conf"
JAIL = REPO / "examples" / "fail2ban" / "jail.d" / "saslauth.local"


@pytest.mark.skipif(shutil.which("fail2ban-regex") is None,
                    reason="fail2ban-regex not installed (Debian package fail2ban)")
def test_filter_matches_failures_and_refusals_only() -> None:
    with public_tmpdir() as directory:
        config = write_config(
            directory, users_file(directory), failure_delay="0", extra=LIMITS
        )
        with running(config, directory / "auth") as daemon:
            conn = Conn(daemon.address)
            try:
                for i in range(3):
                    assert conn.auth("alice", f"wrong{i}", "198.51.100.1")[0] == "FAIL"
                assert conn.auth("nosuchuser", "x", "2001:db8::7")[0] == "FAIL"
                # an invalid name trying to smuggle a fake rip= into the log line
                assert conn.auth('x" rip=6.6.6.6 y', "x", "198.51.100.2")[0] == "FAIL"
                assert conn.auth("alice", "alicepw", "198.51.100.3")[0] == "OK"
                assert conn.auth("typo", "nope", "")[0] == "FAIL"  # rip=-: nothing to ban
                for i in range(8):  # the pair limit refuses from the sixth guess on
                    assert conn.auth("phone", f"guess{i}", "198.51.100.4")[0] == "FAIL"
            finally:
                conn.close()
            time.sleep(0.3)
            log = Path(daemon.log)
            text = daemon.log_text()
        assert text.count("limited=refused:pair") == 3
        out = subprocess.run(
            ["fail2ban-regex", "-o", "ip", str(log), str(FILTER)],
            capture_output=True, text=True, timeout=60, check=True,
        )
    ips = Counter(out.stdout.split())
    assert ips == Counter({"198.51.100.1": 3, "2001:db8::7": 1, "198.51.100.2": 1,
                           "198.51.100.4": 8})


def test_jail_names_the_filter() -> None:
    text = JAIL.read_text()
    assert "filter   = saslauth" in text and "[saslauth]" in text
    assert "result=fail" in FILTER.read_text()
