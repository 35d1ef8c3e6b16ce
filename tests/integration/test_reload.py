"""SIGHUP reload under load: no request failed or lost, connections and the socket survive."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.fixtures.authclient import AuthClient, ConnectionClosed, plain_b64
from tests.fixtures.load import ThreadedLoad
from tests.fixtures.ports import public_tmpdir, wait_until
from tests.fixtures.saslauth import Saslauth, start_saslauth

CONNECTIONS = 50
SLOW = 5  # of them log in with an expensive hash, so every reload meets requests in flight
RELOADS = 10


def config_text(
    socket_path: Path,
    passwd: Path,
    delay: str = "0",
    fronts: int = 2,
    extra: str = "",
    auth_log: str = "all",  # the tests read which passdb answered from the success lines
) -> str:
    return (
        "user: nobody\n"
        f"failure_delay: {delay}\n"
        "listen:\n"
        f"  - path: {socket_path}\n"
        '    mode: "0666"\n'
        "passdb:\n"
        "  - driver: passwd-file\n"
        f"    path: {passwd}\n"
        f"fronts: {fronts}\n"
        f"auth_log: {auth_log}\n"
        f"{extra}"
    )


@pytest.fixture(params=[2, 1], ids=["2-fronts", "1-front"])
def fronts(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def daemon(fronts: int) -> Iterator[Saslauth]:
    from saslauth import schemes

    with public_tmpdir("sarl-") as work:
        users = "bob:{PLAIN}bobpw\n" + (
            f"slow:{schemes.generate('SHA512-CRYPT', b'slowpw', rounds=400_000)}\n"
        )
        for name in ("users-a", "users-b"):
            (work / name).write_text(users)
        config = work / "saslauth.yaml"
        config.write_text(config_text(work / "auth", work / "users-a", fronts=fronts))
        server = start_saslauth(config, work / "auth")
        try:
            yield server
        finally:
            server.stop()


class Load(ThreadedLoad):
    """One thread per connection, each sending the next login as soon as the last is answered."""

    def __init__(self, path: Path) -> None:
        super().__init__(CONNECTIONS)
        self.path = path
        self.ok = [0] * CONNECTIONS
        self.sent = [0] * CONNECTIONS
        self.errors: list[str] = []
        self.spids: set[int] = set()  # the fronts that served these connections

    def _run(self, index: int) -> None:
        user, password = ("slow", "slowpw") if index < SLOW else ("bob", "bobpw")
        resp = plain_b64("", user, password)
        try:
            with AuthClient.connect(str(self.path), timeout=15) as client:
                greeting = client.handshake()
                self.spids.add(int(next(x for x in greeting if x.startswith("SPID\t"))[5:]))
                request = 0
                while not self.done.is_set():
                    request += 1
                    self.sent[index] += 1
                    line = f"AUTH\t{request}\tPLAIN\tservice=smtp\tresp={resp}"
                    reply = client.auth(line, timeout=15)
                    if reply != f"OK\t{request}\tuser={user}":
                        self.errors.append(f"connection {index}: {reply!r}")
                        return
                    self.ok[index] += 1
        except (OSError, ConnectionClosed) as exc:
            self.errors.append(f"connection {index}: {exc!r}")


def _reloads_reach(daemon: Saslauth, count: int) -> bool:
    return daemon.log_text().count("reloaded the configuration") == count


def _more_than(load: Load, count: int) -> bool:
    return sum(load.ok) > count


def test_ten_reloads_under_load_lose_nothing(daemon: Saslauth, fronts: int) -> None:
    config = daemon.config
    good = config.read_text()
    inode = daemon.socket.stat().st_ino
    verifier = daemon.wait_children()["verifier"]
    with Load(daemon.socket) as load:
        wait_until(lambda: sum(load.ok[SLOW:]) > 200 and sum(load.ok[:SLOW]) >= SLOW, 20)
        reloaded = 0
        for round_ in range(RELOADS):
            if round_ == 4:
                # a broken file: reported with FILE:LINE, the old configuration keeps serving
                broken = config_text(daemon.socket, config.parent / "users-b", "20s", fronts)
                config.write_text(broken)
                daemon.proc.send_signal(signal.SIGHUP)
                daemon.wait_log(f"reload failed: {config}:2: failure_delay")
                daemon.wait_log("reload failed: still serving the previous configuration")
                config.write_text(good)
                continue
            passwd = config.parent / ("users-b" if round_ % 2 == 0 else "users-a")
            config.write_text(config_text(daemon.socket, passwd, fronts=fronts))
            daemon.proc.send_signal(signal.SIGHUP)
            reloaded += 1
            daemon.wait(partial(_reloads_reach, daemon, reloaded), 15, what=f"reload {reloaded}")
            wait_until(partial(_more_than, load, sum(load.ok) + 50), 10, what="logins after it")
        time.sleep(0.5)
    assert load.errors == []
    sent, ok = sum(load.sent), sum(load.ok)
    assert ok == sent  # every request sent was answered OK: none failed, none lost
    assert all(n > 0 for n in load.ok)  # every connection kept working throughout
    assert load.spids == set(daemon.fronts()) and len(load.spids) == fronts  # on every front
    log = daemon.log_text()
    assert log.count("reloaded the configuration") == RELOADS - 1
    # each previous verifier finished its requests and exited by itself, not killed
    try:
        wait_until(
            lambda: daemon.log_text().count("previous configuration exited (exit code 0)")
            == RELOADS - 1, 10, what="old verifiers to exit",
        )  # fmt: skip
    except TimeoutError:
        lines = [x for x in daemon.log_text().splitlines() if "verifier" in x or "reload" in x]
        raise AssertionError("\n".join(lines[-40:])) from None
    assert "result=tempfail" not in log and "killed" not in log
    assert "restarting in" not in daemon.log_text()  # a hand-over is never taken for a crash
    assert daemon.socket.stat().st_ino == inode
    assert daemon.wait_children()["verifier"] != verifier
    assert f"backend=passwd-file:{config.parent / 'users-b'}" in log  # the new passdb is used


def _login(client: AuthClient, request: int, password: str) -> str | None:
    resp = plain_b64("", "bob", password)
    return client.auth(f"AUTH\t{request}\tPLAIN\tservice=smtp\tresp={resp}", timeout=15)


def _verifier_pids(daemon: Saslauth) -> list[int]:
    return [int(x) for x in re.findall(r"started verifier \(pid (\d+)\)", daemon.log_text())]


def test_reload_whose_new_verifier_dies_leaves_both_fronts_serving() -> None:
    """One front switched to the new verifier, the other not yet, when that verifier dies:
    the reload fails and every front ends up on a verifier of the previous configuration."""
    with public_tmpdir("sarl-") as work:
        (work / "users-a").write_text("bob:{PLAIN}oldpw\n")
        (work / "users-b").write_text("bob:{PLAIN}newpw\n")
        config = work / "saslauth.yaml"
        config.write_text(config_text(work / "auth", work / "users-a", fronts=2))
        daemon = start_saslauth(config, work / "auth")
        clients: list[tuple[AuthClient, int]] = []
        try:
            daemon.wait_children()
            first, second = daemon.fronts()
            while {spid for _, spid in clients} != {first, second}:  # connections on both
                assert len(clients) < 200, "the kernel never picked one of the fronts"
                client = AuthClient.connect(str(daemon.socket), timeout=15)
                greeting = client.handshake()
                clients.append((client, int(next(x for x in greeting if "SPID" in x)[5:])))
            os.kill(second, signal.SIGSTOP)  # it gets the RELOAD only once we let it go on
            try:
                only_plain = "mechanisms: [PLAIN]\n"  # the fronts' part of the configuration
                new_text = config_text(work / "auth", work / "users-b", fronts=2, extra=only_plain)
                config.write_text(new_text)
                daemon.proc.send_signal(signal.SIGHUP)
                daemon.wait(lambda: len(_verifier_pids(daemon)) == 2, 10, what="new verifier")
                new = _verifier_pids(daemon)[1]

                def taken_over() -> bool:  # the first front took the new verifier over
                    return daemon.log_text().count("verifier connected") == 3

                daemon.wait(taken_over, 10, what="a front connected to the new verifier")
                os.kill(new, signal.SIGKILL)
                daemon.wait_log("reload failed: the new verifier exited (killed by signal 9)")
                daemon.wait_log("lost their verifier; starting a fresh one for all fronts")
            finally:
                os.kill(second, signal.SIGCONT)
            # the second front hands its old verifier over to the fresh one, which then exits
            daemon.wait_log("verifier of the previous configuration exited (exit code 0)")
            assert len(_verifier_pids(daemon)) == 3
            request = 0
            for client, spid in clients:  # every connection, on both fronts: the old config
                request += 1
                assert _login(client, request, "oldpw") == f"OK\t{request}\tuser=bob", spid
                request += 1
                assert _login(client, request, "newpw") == f"FAIL\t{request}\tuser=bob", spid
            assert daemon.children()["verifier"] == _verifier_pids(daemon)[2]
            # the front that had switched greets with the running settings again, as the other
            greeted: dict[int, list[str]] = {}
            for _ in range(200):
                if len(greeted) == 2:
                    break
                with AuthClient.connect(str(daemon.socket), timeout=15) as probe:
                    greeting = probe.handshake()
                spid = int(next(x for x in greeting if "SPID" in x)[5:])
                greeted[spid] = [x for x in greeting if x.startswith("MECH\t")]
            assert set(greeted) == {first, second}
            for mechs in greeted.values():
                assert [x.split("\t")[1] for x in mechs] == ["PLAIN", "LOGIN"], greeted
            log = daemon.log_text()
            assert "reloaded the configuration" not in log and "result=tempfail" not in log
            # and a later reload works on both fronts
            daemon.proc.send_signal(signal.SIGHUP)
            daemon.wait_log("reloaded the configuration")
            for client, spid in clients:
                request += 1
                assert _login(client, request, "newpw") == f"OK\t{request}\tuser=bob", spid
        finally:
            for client, _ in clients:
                client.close()
            daemon.stop()


def test_reload_to_auth_log_failures_drops_success_lines_of_new_connections() -> None:
    """auth_log is reloadable: after a reload from ``all`` to ``failures`` a new connection's
    successful login has no auth: line, its failed one has; the connection open before keeps
    ``all``."""
    with public_tmpdir("sarl-") as work:
        (work / "users").write_text("bob:{PLAIN}bobpw\n")
        config = work / "saslauth.yaml"
        config.write_text(config_text(work / "auth", work / "users", fronts=1, auth_log="all"))
        daemon = start_saslauth(config, work / "auth")
        try:
            with AuthClient.connect(str(daemon.socket), timeout=15) as before:
                before.handshake()
                assert _login(before, 1, "bobpw") == "OK\t1\tuser=bob"
                daemon.wait_log("auth: result=ok user=bob")
                quiet = config_text(work / "auth", work / "users", fronts=1, auth_log="failures")
                config.write_text(quiet)
                daemon.proc.send_signal(signal.SIGHUP)
                daemon.wait(partial(_reloads_reach, daemon, 1), 15, what="the reload")
                with AuthClient.connect(str(daemon.socket), timeout=15) as after:
                    after.handshake()
                    assert _login(after, 1, "bobpw") == "OK\t1\tuser=bob"
                    assert _login(after, 2, "wrong") == "FAIL\t2\tuser=bob"
                daemon.wait_log("auth: result=fail user=bob")
                assert _login(before, 2, "bobpw") == "OK\t2\tuser=bob"  # greeted before: all
                daemon.wait(lambda: daemon.log_text().count("auth: result=ok") == 2, 10)
            time.sleep(0.3)  # any line still on its way
            assert daemon.log_text().count("auth: result=ok") == 2
        finally:
            daemon.stop()
