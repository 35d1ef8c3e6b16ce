"""The real daemon as a process: master, front and verifier, over a real UNIX socket."""

from __future__ import annotations

import os
import pwd
import shutil
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

PASSWORD = "s3cret-Pässword"


def _hash(password: str, scheme: str = "SHA512-CRYPT", rounds: int | None = None) -> str:
    from saslauth import schemes

    return schemes.generate(scheme, password.encode(), rounds=rounds)


@pytest.fixture
def workdir() -> Iterator[Path]:
    with public_tmpdir() as path:
        yield path


@pytest.fixture
def passwd(workdir: Path) -> Path:
    path = workdir / "users"
    path.write_text(
        f"alice:{_hash(PASSWORD)}\n"
        "bob:{PLAIN}bobpw\n"
        f"slow:{_hash('slowpw', rounds=3_000_000)}\n"
    )
    path.chmod(0o600)
    return path


@pytest.fixture
def daemon(workdir: Path, passwd: Path) -> Iterator[Saslauth]:
    config = write_config(workdir, passwd, extra="auth_log: all\n")  # success lines too
    with running(config, workdir / "auth") as server:
        yield server


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run(
        [sys.executable, "-c", "import sys; from saslauth.testclient import main; sys.exit(main())",
         *args],
        capture_output=True, text=True, env=env, input=stdin, timeout=60, check=False,
    )


def saslauth(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run(
        [sys.executable, "-m", "saslauth", *args],
        capture_output=True, text=True, env=env, input=stdin, timeout=60, check=False,
    )


def test_saslauth_test_exit_codes(daemon: Saslauth) -> None:
    ok = cli("-s", daemon.address, "-u", "alice", "-p", PASSWORD)
    assert (ok.returncode, ok.stdout.strip()) == (0, "OK user=alice")
    login = cli("-s", daemon.address, "-u", "Alice", "-p", PASSWORD, "-m", "LOGIN")
    assert (login.returncode, login.stdout.strip()) == (0, "OK user=alice original_user=Alice")
    bad = cli("-s", daemon.address, "-u", "alice", "-p", "wrong")
    assert (bad.returncode, bad.stdout.strip()) == (1, "FAIL user=alice")
    unknown = cli("-s", daemon.address, "-u", "nobody", "-p", "wrong")
    assert (unknown.returncode, unknown.stdout.strip()) == (1, "FAIL user=nobody")
    prompt = cli("-s", daemon.address, "-u", "bob", stdin="bobpw\n")
    assert prompt.returncode == 0
    config = cli("-c", str(daemon.config), "-u", "bob", "-p", "bobpw")
    assert config.returncode == 0
    nowhere = cli("-s", str(daemon.directory / "missing"), "-u", "bob", "-p", "x")
    assert nowhere.returncode == 2 and "cannot connect" in nowhere.stderr
    usage = cli("-s", daemon.address)
    assert usage.returncode == 2


def test_default_auth_log_has_failures_only(workdir: Path, passwd: Path) -> None:
    with running(write_config(workdir, passwd), workdir / "auth") as daemon:
        assert cli("-s", daemon.address, "-u", "bob", "-p", "bobpw").returncode == 0
        assert cli("-s", daemon.address, "-u", "bob", "-p", "wrong").returncode == 1
        daemon.wait_log("auth: result=fail user=bob")
        time.sleep(0.3)  # the success's line, had there been one, was written before
        assert "result=ok" not in daemon.log_text()


def test_passwords_never_logged(daemon: Saslauth) -> None:
    cli("-s", daemon.address, "-u", "alice", "-p", PASSWORD)
    cli("-s", daemon.address, "-u", "alice", "-p", "WrongGuess42", "-m", "LOGIN")
    daemon.wait_log("result=fail")
    text = daemon.log_text()
    assert "result=ok user=alice mech=PLAIN service=smtp" in text
    for secret in (PASSWORD, "WrongGuess42", "$6$", "SHA512-CRYPT"):
        assert secret not in text


def test_hundreds_of_connections_with_pipelining(daemon: Saslauth) -> None:
    clients = [AuthClient.connect(daemon.address) for _ in range(300)]
    try:
        for client in clients:
            client.handshake()
        resp = plain_b64("", "bob", "bobpw")
        for client in clients:
            client.send_lines(f"AUTH\t{i}\tPLAIN\tservice=smtp\tresp={resp}" for i in range(1, 4))
        for client in clients:
            assert sorted(client.read_replies(3, timeout=20)) == [
                f"OK\t{i}\tuser=bob" for i in range(1, 4)
            ]
    finally:
        for client in clients:
            client.close()


def test_verifier_crash_fails_in_flight_then_recovers(daemon: Saslauth) -> None:
    first = daemon.wait_children()
    with AuthClient.connect(daemon.address) as client:
        client.handshake()
        client.send_line(f"AUTH\t1\tPLAIN\tservice=smtp\tresp={plain_b64('', 'slow', 'slowpw')}")
        time.sleep(0.3)  # the verifier is busy hashing 3 million rounds
        os.kill(first["verifier"], signal.SIGKILL)
        assert client.read_line(10) == "FAIL\t1\tuser=slow\tcode=temp_fail"
        # a new verifier is started with back-off; the next login on the same connection works
        client.send_line(f"AUTH\t2\tPLAIN\tservice=smtp\tresp={plain_b64('', 'bob', 'bobpw')}")
        assert client.read_line(10) == "OK\t2\tuser=bob"
    second = daemon.wait_children()
    assert second["verifier"] != first["verifier"] and second["front"] == first["front"]
    assert "verifier exited (killed by signal 9)" in daemon.log_text()


def test_repeated_verifier_crashes_back_off(daemon: Saslauth) -> None:
    for _ in range(3):
        pid = daemon.wait_children()["verifier"]
        os.kill(pid, signal.SIGKILL)

        def restarted(old: int = pid) -> bool:
            return daemon.children().get("verifier", old) != old

        wait_until(restarted, 10, what="restart")
    ok = cli("-s", daemon.address, "-u", "bob", "-p", "bobpw")
    assert ok.returncode == 0
    assert "restarting in 0.4s" in daemon.log_text()


def test_missing_passwd_file_is_temporary(daemon: Saslauth, passwd: Path) -> None:
    moved = passwd.with_suffix(".away")
    passwd.rename(moved)
    result = cli("-s", daemon.address, "-u", "bob", "-p", "bobpw")
    assert (result.returncode, result.stdout.strip()) == (2, "FAIL user=bob code=temp_fail")
    moved.rename(passwd)
    assert cli("-s", daemon.address, "-u", "bob", "-p", "bobpw").returncode == 0


def test_sigterm_answers_requests_in_flight(workdir: Path, passwd: Path) -> None:
    config = write_config(workdir, passwd, failure_delay="1500ms")
    with running(config, workdir / "auth") as server:
        with AuthClient.connect(server.address) as client:
            client.handshake()
            client.send_line(f"AUTH\t1\tPLAIN\tservice=smtp\tresp={plain_b64('', 'bob', 'no')}")
            time.sleep(0.2)
            server.proc.send_signal(signal.SIGTERM)
            assert client.read_line(5) == "FAIL\t1\tuser=bob"
            assert client.is_closed(5)
        assert server.proc.wait(10) == 0
        assert not (workdir / "auth").exists() or not server.children()


def test_bad_config_exits_with_file_and_line(workdir: Path, passwd: Path) -> None:
    config = workdir / "bad.yaml"
    config.write_text(f"listen:\n  - path: {workdir}/auth\npassdb:\n  - driver: nope\n")
    result = saslauth("serve", "--config", str(config))
    assert result.returncode == 1
    assert f"{config}:4: passdb.0.driver: unknown driver 'nope' (known: " in result.stderr
    check = saslauth("check-config", "--config", str(config))
    assert check.returncode == 1 and f"{config}:4: passdb.0.driver" in check.stdout
    good = write_config(workdir, passwd)
    check = saslauth("check-config", "--config", str(good))
    assert check.returncode == 0 and "OK: 1 listener(s), 1 passdb(s)" in check.stdout


def test_socket_in_use_is_refused(daemon: Saslauth) -> None:
    result = saslauth("serve", "--config", str(daemon.config))
    assert result.returncode == 1 and "another server is listening there" in result.stderr


def test_hash_cli_round_trip(daemon: Saslauth, passwd: Path) -> None:
    made = saslauth("hash", "-p", "fresh-pw")
    assert made.returncode == 0 and made.stdout.startswith("{SHA512-CRYPT}$6$")
    from_stdin = saslauth("hash", "-s", "PLAIN", stdin="piped\n")
    assert from_stdin.stdout.strip() == "{PLAIN}piped"
    with passwd.open("a") as handle:
        handle.write(f"carol:{made.stdout.strip()}\n")
    assert cli("-s", daemon.address, "-u", "carol", "-p", "fresh-pw").returncode == 0


@pytest.mark.dovecot
def test_doveadm_auth_test_against_saslauth(daemon: Saslauth) -> None:
    if shutil.which("doveadm") is None:
        pytest.skip("doveadm (dovecot-core) is not installed")
    result = subprocess.run(
        ["doveadm", "auth", "test", "-a", daemon.address, "alice", PASSWORD],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "auth succeeded" in result.stdout
    wrong = subprocess.run(
        ["doveadm", "auth", "test", "-a", daemon.address, "alice", "nope"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert wrong.returncode == 77 and "auth failed" in wrong.stdout


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="privilege separation needs root")
def test_privileges_as_root(daemon: Saslauth) -> None:
    roles = daemon.wait_children()
    nobody = pwd.getpwnam("nobody")

    def status(pid: int) -> dict[str, list[str]]:
        text = Path(f"/proc/{pid}/status").read_text()
        return {k: v.split() for k, v in (line.split(":", 1) for line in text.splitlines())}

    front = status(roles["front"])
    assert front["Uid"] == [str(nobody.pw_uid)] * 4
    assert front["Gid"] == [str(nobody.pw_gid)] * 4
    assert front["Groups"] == []
    assert front["CapEff"] == ["0000000000000000"]
    assert status(roles["verifier"])["Uid"][:2] == ["0", "0"]
    assert status(daemon.proc.pid)["Uid"][:2] == ["0", "0"]
    # the passwd-file is 0600 root: only the verifier can read it, yet logins work
    assert cli("-s", daemon.address, "-u", "alice", "-p", PASSWORD).returncode == 0
    # the front's open files hold no password file
    fds = Path(f"/proc/{roles['front']}/fd")
    targets = [os.readlink(fd) for fd in fds.iterdir()]
    assert not any("users" in target for target in targets)


def test_no_core_dumps_and_no_ptrace(daemon: Saslauth) -> None:
    roles = daemon.wait_children()
    for pid in (daemon.proc.pid, roles["front"], roles["verifier"]):
        limits = Path(f"/proc/{pid}/limits").read_text()
        core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
        assert core.split()[4:6] == ["0", "0"], core
    # not dumpable: the kernel makes the front's /proc files root's, so its own user (and any
    # other process running as that user) can neither read its memory nor attach a debugger
    assert os.stat(f"/proc/{roles['front']}/mem").st_uid == 0
    assert os.stat(f"/proc/{roles['front']}/status").st_uid == 0
