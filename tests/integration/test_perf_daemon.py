"""Performance features through the real daemon: the verification cache (hits, failure delay,
SIGUSR1 and ``saslauth flush``), both event loops, and 2,000 idle connections under load."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.authclient import AuthClient, plain_b64
from tests.fixtures.ports import public_tmpdir, wait_until
from tests.fixtures.saslauth import REPO, Saslauth, running, write_config

SLOW_ROUNDS = 400_000  # SHA512-CRYPT rounds: a miss costs a noticeable fraction of a second
AUTHBENCH_SRC = REPO.parent / "shared" / "tools" / "authbench.c"


def _hash(password: str, rounds: int) -> str:
    from saslauth import schemes

    return schemes.generate("SHA512-CRYPT", password.encode(), rounds=rounds)


@pytest.fixture
def workdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with public_tmpdir() as path:
        monkeypatch.setenv("SASLAUTH_RUN_DIR", str(path / "run"))  # daemon and CLI alike
        yield path


def _login(client: AuthClient, rid: int, user: str, password: str) -> tuple[str, float]:
    started = time.monotonic()
    line = client.auth(
        f"AUTH\t{rid}\tPLAIN\tservice=smtp\tresp={plain_b64('', user, password)}", timeout=20
    )
    assert line is not None
    return line, time.monotonic() - started


def _cache_states(daemon: Saslauth, user: str) -> list[str]:
    return re.findall(rf"result=\w+ user={user} .*?cache=(\w+)", daemon.log_text())


def _wait_states(daemon: Saslauth, user: str, count: int) -> list[str]:
    wait_until(lambda: len(_cache_states(daemon, user)) >= count, 10, what="auth log lines")
    return _cache_states(daemon, user)


def test_cache_makes_repeats_fast_keeps_failure_delay_and_flushes(workdir: Path) -> None:
    passwd = workdir / "users"
    passwd.write_text(
        f"alice:{_hash('alicepw', SLOW_ROUNDS)}\nbob:{_hash('bobpw', SLOW_ROUNDS)}\n"
    )
    # (auth_log: all: the hits and misses of successful logins are logged too)
    cache = "cache:\n  ttl: 5m\n  negative_ttl: 30s\n  size: 100\nauth_log: all\n"
    config = write_config(workdir, passwd, failure_delay="0.5", extra=cache)
    with running(config, workdir / "auth") as daemon, AuthClient.connect(daemon.address) as c:
        c.handshake()
        daemon.wait_log("verification cache on")
        first, miss = _login(c, 1, "alice", "alicepw")
        second, hit = _login(c, 2, "alice", "alicepw")
        assert (first, second) == ("OK\t1\tuser=alice", "OK\t2\tuser=alice")
        assert hit < miss / 5, (miss, hit)
        # a wrong password after a cached right one: still a failure, still delayed
        wrong, took = _login(c, 3, "alice", "nope")
        assert wrong == "FAIL\t3\tuser=alice" and took >= 0.45
        again, took = _login(c, 4, "alice", "nope")  # a negative hit is delayed just the same
        assert again == "FAIL\t4\tuser=alice" and took >= 0.45
        _login(c, 5, "bob", "bobpw")
        assert _wait_states(daemon, "alice", 4) == ["miss", "hit", "miss", "hit"]
        # SIGUSR1 to the master empties the cache
        os.kill(daemon.proc.pid, signal.SIGUSR1)
        daemon.wait_log("cache flushed:")
        assert _login(c, 6, "alice", "alicepw")[0] == "OK\t6\tuser=alice"
        assert _login(c, 7, "bob", "bobpw")[0] == "OK\t7\tuser=bob"
        assert _wait_states(daemon, "alice", 5)[-1] == "miss"
        assert _wait_states(daemon, "bob", 2) == ["miss", "miss"]
        # saslauth flush USER drops that user's entries only
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
        done = subprocess.run(
            [sys.executable, "-m", "saslauth", "flush", "--pid", str(daemon.proc.pid), "Alice"],
            capture_output=True, text=True, env=env, timeout=30, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "flush users alice" in done.stdout
        daemon.wait_log("cache flushed: 1 entries of 1 user(s)")
        _login(c, 8, "alice", "alicepw")
        _login(c, 9, "bob", "bobpw")
        assert _wait_states(daemon, "alice", 6)[-1] == "miss"
        assert _wait_states(daemon, "bob", 3)[-1] == "hit"
        # saslauth flush (everything); --pid because other daemons may run on this machine
        done = subprocess.run(
            [sys.executable, "-m", "saslauth", "flush", "--pid", str(daemon.proc.pid)],
            capture_output=True, text=True, env=env, timeout=30, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        daemon.wait_log("(all users)")
        _login(c, 10, "bob", "bobpw")
        assert _wait_states(daemon, "bob", 4)[-1] == "miss"
    text = daemon.log_text()
    assert "alicepw" not in text and "$6$" not in text


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_daemon_runs_on_each_event_loop(workdir: Path, loop: str) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop not installed (saslauth[uvloop])")
    passwd = workdir / "users"
    passwd.write_text(f"alice:{{PLAIN}}alicepw\ncarol:{_hash('carolpw', 5000)}\n")
    config = write_config(workdir, passwd, extra=f"event_loop: {loop}\n")
    with running(config, workdir / "auth") as daemon:
        daemon.wait_log("verifier ready")
        text = daemon.log_text()
        assert re.search(rf"front ready \(.*, {loop}\)", text)
        assert re.search(rf"verifier ready \(.*, {loop}\)", text)
        clients = [AuthClient.connect(daemon.address) for _ in range(20)]
        try:
            for client in clients:
                client.handshake()
            for i, client in enumerate(clients):
                user, pw = ("alice", "alicepw") if i % 2 else ("carol", "carolpw")
                client.send_lines(
                    [
                        f"AUTH\t1\tPLAIN\tservice=smtp\tresp={plain_b64('', user, pw)}",
                        f"AUTH\t2\tPLAIN\tservice=smtp\tresp={plain_b64('', user, 'bad')}",
                        f"AUTH\t3\tPLAIN\tservice=smtp\tresp={plain_b64('', 'ghost', pw)}",
                    ]
                )
            for i, client in enumerate(clients):
                user = "alice" if i % 2 else "carol"
                assert sorted(client.read_replies(3, timeout=20)) == [
                    f"FAIL\t2\tuser={user}",
                    "FAIL\t3\tuser=ghost",
                    f"OK\t1\tuser={user}",
                ]
        finally:
            for client in clients:
                client.close()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _connect(address: str) -> AuthClient:
    """Connect, retrying while the listen queue is full (a burst of 2,000 in a tight loop)."""
    for _ in range(500):
        try:
            return AuthClient.connect(address, timeout=20)
        except BlockingIOError:
            time.sleep(0.01)
    raise AssertionError("the listen queue stayed full for 5 s")


@pytest.mark.slow
def test_two_thousand_idle_connections_plus_load(workdir: Path) -> None:
    if not AUTHBENCH_SRC.is_file():
        pytest.skip(f"needs the authbench load generator ({AUTHBENCH_SRC})")
    binary = workdir / "authbench"
    subprocess.run(["cc", "-O2", "-o", str(binary), str(AUTHBENCH_SRC)], check=True, timeout=120)
    passwd, creds = workdir / "users", workdir / "creds"
    passwd.write_text("".join(f"u{i}:{{PLAIN}}pw{i}\n" for i in range(100)))
    creds.write_text("".join(f"u{i}:pw{i}\n" for i in range(100)))
    config = write_config(workdir, passwd)
    with running(config, workdir / "auth") as daemon:
        pids = [daemon.proc.pid, *daemon.wait_children().values()]
        before = sum(_rss_kib(p) for p in pids)
        idle = []
        try:
            for _ in range(2000):
                client = _connect(daemon.address)
                idle.append(client)
                client.send_raw(b"VERSION\t1\t0\nCPID\t1\n")
            for client in idle:
                assert client.read_greeting(timeout=20)[-1] == "DONE"
            load = subprocess.run(
                [str(binary), "-s", daemon.address, "-f", str(creds), "-c", "50", "-t", "3",
                 "-w", "0.5", "-r"],
                capture_output=True, text=True, timeout=60, check=True,
            )  # fmt: skip
            result = json.loads(load.stdout.strip().splitlines()[-1])
            during = {p: _rss_kib(p) for p in pids}
            # the idle connections are all still served
            for i, client in enumerate(idle[::100], 1):
                line = f"AUTH\t{i}\tPLAIN\tservice=smtp\tresp={plain_b64('', 'u1', 'pw1')}"
                assert client.auth(line, timeout=20) == f"OK\t{i}\tuser=u1"
        finally:
            for client in idle:
                client.close()
        log_text = daemon.log_text()  # before the stop, whose messages are not ours to judge
    assert " ERROR " not in log_text and " WARNING " not in log_text, log_text[-2000:]
    assert result["ok"] > 0 and result["fail"] == result["other"] == result["closed"] == 0
    total = sum(during.values())
    print(
        f"\n2000 idle + 50 busy connections: {result['auth_per_s']} auth/s, "
        f"p99 {result['p99_us'] / 1000:.1f} ms; RSS of all saslauth processes "
        f"{total / 1024:.1f} MiB (before the connections {before / 1024:.1f} MiB): "
        + ", ".join(f"pid {p} {k / 1024:.1f} MiB" for p, k in during.items())
    )
