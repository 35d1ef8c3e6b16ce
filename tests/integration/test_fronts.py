"""Several front processes (``fronts: 2``) sharing the listeners, all talking to one verifier."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest

from saslauth import pinwatch
from tests.fixtures.authclient import AuthClient, ConnectionClosed, plain_b64
from tests.fixtures.load import ThreadedLoad
from tests.fixtures.ports import public_tmpdir, wait_until
from tests.fixtures.saslauth import REPO, Saslauth, running, write_config

CONNECTIONS = 40
BOB = plain_b64("", "bob", "bobpw")


@pytest.fixture
def workdir() -> Iterator[Path]:
    with public_tmpdir("safr-") as path:
        (path / "users").write_text("bob:{PLAIN}bobpw\n")
        yield path


@pytest.fixture
def daemon(workdir: Path) -> Iterator[Saslauth]:
    config = write_config(workdir, workdir / "users", extra="fronts: 2\n")
    with running(config, workdir / "auth") as server:
        yield server


def greeting_ids(greeting: list[str]) -> tuple[int, int]:
    """(SPID, CUID) of a Dovecot handshake."""
    fields = dict(line.split("\t", 1) for line in greeting if "\t" in line)
    return int(fields["SPID"]), int(fields["CUID"])


def connect_all(daemon: Saslauth, count: int) -> list[tuple[AuthClient, int, int]]:
    """``count`` connections made at once: (client, spid, cuid) each."""

    def one(_: int) -> tuple[AuthClient, int, int]:
        client = AuthClient.connect(daemon.address, timeout=15)
        return (client, *greeting_ids(client.handshake()))

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_two_fronts_share_the_socket(daemon: Saslauth) -> None:
    roles = daemon.wait_children()
    fronts = daemon.fronts()
    assert len(fronts) == 2 and set(roles) == {"front", "front2", "verifier"}
    if os.geteuid() == 0:  # both dropped to the unprivileged user, with no groups
        nobody = pwd.getpwnam("nobody")
        for pid in fronts:
            status = dict(
                line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            )
            assert status["Uid"].split() == [str(nobody.pw_uid)] * 4
            assert status["Groups"].split() == []
    clients = connect_all(daemon, CONNECTIONS)
    try:
        for index, (client, _, _) in enumerate(clients):
            client.send_line(f"AUTH\t{index + 1}\tPLAIN\tservice=smtp\tresp={BOB}")
        for index, (client, _, _) in enumerate(clients):
            assert client.read_line(15) == f"OK\t{index + 1}\tuser=bob"
        spids = [spid for _, spid, _ in clients]
        cuids = [cuid for _, _, cuid in clients]
        assert set(spids) == set(fronts), spids  # connections reached both fronts
        assert len(set(cuids)) == CONNECTIONS, sorted(cuids)  # unique across the fronts
        # front i of N hands out i+1, i+1+N, ...: one residue per front, a different one each
        residues = {pid: {cuid % 2 for spid, cuid in zip(spids, cuids, strict=True) if spid == pid}
                    for pid in fronts}  # fmt: skip
        assert sorted(residues.values(), key=min) == [{0}, {1}], residues
    finally:
        for client, _, _ in clients:
            client.close()
    assert daemon.log_text().count("front ready") == 2
    assert "serving: 2 front(s) ready" in daemon.log_text()
    # pin_fronts: auto, the default: each of the 2 fronts on a CPU of its own when there are 2
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) >= 2:
        assert sorted(sorted(os.sched_getaffinity(pid)) for pid in fronts) == [
            [allowed[0]],
            [allowed[1]],
        ]
        assert "front 1 of 2 pinned to CPU" in daemon.log_text()
    else:
        assert [sorted(os.sched_getaffinity(pid)) for pid in fronts] == [allowed] * 2
    assert os.sched_getaffinity(roles["verifier"]) == set(allowed)


def test_pin_fronts_false_leaves_every_process_on_any_cpu(workdir: Path) -> None:
    config = write_config(workdir, workdir / "users", extra="fronts: 2\npin_fronts: false\n")
    with running(config, workdir / "auth") as daemon:
        roles = daemon.wait_children()
        daemon.wait_log("serving: 2 front(s) ready")
        allowed = os.sched_getaffinity(0)
        pids = [daemon.proc.pid, *roles.values()]
        assert [os.sched_getaffinity(pid) for pid in pids] == [allowed] * 4
        assert "pinned to CPU" not in daemon.log_text()


def _hog(cpu: int) -> subprocess.Popen[bytes]:
    """A CPU-bound process that runs on ``cpu`` only."""
    code = f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


AUTHBENCH_SRC = REPO.parent / "shared" / "tools" / "authbench.c"


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_auto_pinned_front_leaves_a_crowded_cpu(workdir: Path) -> None:
    """pin_fronts: auto: authbench keeping both fronts busy leaves them pinned; three busy
    processes on a front's CPU as well make that front serve on any CPU within a few intervals
    (saslauth.pinwatch), and the other front stays pinned."""
    if shutil.which("cc") is None or not AUTHBENCH_SRC.is_file():
        pytest.skip(f"needs cc and the authbench load generator ({AUTHBENCH_SRC})")
    binary, creds = workdir / "authbench", workdir / "creds"
    subprocess.run(["cc", "-O2", "-o", str(binary), str(AUTHBENCH_SRC)], check=True, timeout=120)
    creds.write_text("bob:bobpw\n")
    config = write_config(workdir, workdir / "users", extra="fronts: 2\n")
    with running(config, workdir / "auth") as daemon:
        daemon.wait_log("serving: 2 front(s) ready")
        crowded, other = daemon.fronts()
        (cpu,) = os.sched_getaffinity(crowded)
        load = subprocess.Popen(
            [str(binary), "-s", daemon.address, "-f", str(creds), "-c", "50", "-t", "40", "-r"],
            stdout=subprocess.DEVNULL,
        )
        hogs: list[subprocess.Popen[bytes]] = []
        try:
            time.sleep(pinwatch.INTERVAL * (pinwatch.STREAK + 1))  # busy, but not crowded
            assert "leaves CPU" not in daemon.log_text()
            assert [len(os.sched_getaffinity(pid)) for pid in (crowded, other)] == [1, 1]
            hogs = [_hog(cpu) for _ in range(3)]
            daemon.wait_log("leaves CPU", timeout=30)
            left = os.sched_getaffinity(crowded)
        finally:
            for proc in [*hogs, load]:
                proc.kill()
                proc.wait()
        assert left == os.sched_getaffinity(0)
        assert len(os.sched_getaffinity(other)) == 1
        (line,) = [x for x in daemon.log_text().splitlines() if "leaves CPU" in x]
        assert f"front 1 of 2 leaves CPU {cpu}: other work crowds it (for 6 s it ran " in line
        assert f"tries CPU {cpu} again in 60 s" in line, line


def test_one_front(workdir: Path) -> None:
    config = write_config(workdir, workdir / "users", extra="fronts: 1\n")
    with running(config, workdir / "auth") as daemon:
        roles = daemon.wait_children()
        assert set(roles) == {"front", "verifier"}
        # pin_fronts: auto pins nothing for one front: there is no other to keep away from
        assert os.sched_getaffinity(roles["front"]) == os.sched_getaffinity(0)
        clients = connect_all(daemon, 5)
        try:
            assert {spid for _, spid, _ in clients} == {roles["front"]}
            cuids = sorted(cuid for _, _, cuid in clients)  # (start_saslauth's probe had 1)
            assert cuids == list(range(cuids[0], cuids[0] + 5))
            client = clients[0][0]
            assert client.auth(f"AUTH\t1\tPLAIN\tservice=smtp\tresp={BOB}", 10) == "OK\t1\tuser=bob"
        finally:
            for client, _, _ in clients:
                client.close()


class Load(ThreadedLoad):
    """One thread per connection logging in again and again; records each reply by front."""

    def __init__(self, clients: list[tuple[AuthClient, int, int]]) -> None:
        super().__init__(len(clients))
        self.clients = clients
        self.replies: list[list[tuple[float, str]]] = [[] for _ in clients]
        self.errors: list[str] = []

    def _run(self, index: int) -> None:
        client = self.clients[index][0]
        request = 0
        try:
            while not self.done.is_set():
                request += 1
                reply = client.auth(f"AUTH\t{request}\tPLAIN\tservice=smtp\tresp={BOB}", 15)
                if reply is None:
                    self.errors.append(f"connection {index}: no reply")
                    return
                self.replies[index].append((time.monotonic(), reply.split("\t", 2)[0]))
                time.sleep(0.005)
        except (OSError, ConnectionClosed) as exc:
            self.errors.append(f"connection {index}: {exc!r}")

    def ok_after(self, moment: float, spid: int) -> int:
        return sum(
            1
            for (_, pid, _), replies in zip(self.clients, self.replies, strict=True)
            if pid == spid
            for when, word in replies
            if when > moment and word == "OK"
        )


def _logins_after(load: Load, moment: float, spid: int) -> bool:
    return load.ok_after(moment, spid) > 20


def test_verifier_crash_under_load_both_fronts_reconnect(daemon: Saslauth) -> None:
    first = daemon.wait_children()
    fronts = daemon.fronts()
    clients = connect_all(daemon, 20)
    try:
        assert {spid for _, spid, _ in clients} == set(fronts)
        with Load(clients) as load:
            wait_until(lambda: all(load.ok_after(0, pid) > 20 for pid in fronts), 20)
            os.kill(first["verifier"], signal.SIGKILL)
            wait_until(lambda: daemon.children().get("verifier", first["verifier"])
                       != first["verifier"], 10, what="a new verifier")  # fmt: skip
            restarted = time.monotonic()
            for pid in fronts:  # later logins succeed on connections of both fronts
                wait_until(partial(_logins_after, load, restarted + 0.5, pid), 15,
                           what=f"logins on front {pid}")  # fmt: skip
        assert load.errors == []
        # what failed failed as a temporary failure, during the crash only
        words = {word for replies in load.replies for _, word in replies}
        assert words <= {"OK", "FAIL"}
    finally:
        for client, _, _ in clients:
            client.close()
    second = daemon.wait_children()
    assert second["verifier"] != first["verifier"] and daemon.fronts() == fronts
    text = daemon.log_text()
    assert text.count("verifier exited (killed by signal 9)") == 1  # restarted once
    assert text.count("started verifier") == 2
    assert text.count("verifier connected") == 4  # each front: the first and the new one


def test_killing_one_front_stops_the_daemon(daemon: Saslauth) -> None:
    daemon.wait_children()
    victim = daemon.fronts()[1]
    os.kill(victim, signal.SIGKILL)
    assert daemon.proc.wait(20) == 1
    assert f"(pid {victim}) exited (killed by signal 9); stopping" in daemon.log_text()
    wait_until(lambda: not daemon.children(), 10, what="every child to exit")


def test_check_config_rejects_bad_fronts(workdir: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    for bad in ("0", "many"):
        config = write_config(workdir, workdir / "users", extra=f"fronts: {bad}\n")
        check = subprocess.run(
            [sys.executable, "-m", "saslauth", "check-config", "--config", str(config)],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )  # fmt: skip
        assert check.returncode == 1
        assert f"{config}:9: fronts: auto, or a whole number from 1 to 64" in check.stdout
    config = write_config(workdir, workdir / "users", extra="fronts: 3\n")
    check = subprocess.run(
        [sys.executable, "-m", "saslauth", "check-config", "--config", str(config)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert check.returncode == 0 and "3 front(s)" in check.stdout
