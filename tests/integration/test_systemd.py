"""systemd integration: the unit files, socket activation, sd_notify, restarts."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.fixtures.authclient import AuthClient, ConnectionClosed, plain_b64
from tests.fixtures.ports import public_tmpdir, wait_until
from tests.fixtures.saslauth import REPO
from tests.fixtures.sdnotify import (
    NotifyReceiver,
    daemon_env,
    launch_with_socket,
    listening_unix_socket,
)

UNITS = REPO / "packaging" / "systemd"
INSTALLED = "/usr/local/bin/saslauth"


def config_text(socket_path: Path, passwd: Path, *, name: str = "auth", extra: str = "") -> str:
    return (
        "user: nobody\n"
        "failure_delay: 0\n"
        "listen:\n"
        f"  - path: {socket_path}\n"
        f"    name: {name}\n"
        '    mode: "0666"\n'
        "passdb:\n"
        "  - driver: passwd-file\n"
        f"    path: {passwd}\n"
        f"{extra}"
    )


@pytest.fixture
def work() -> Iterator[Path]:
    with public_tmpdir("sasd-") as path:
        (path / "users").write_text("bob:{PLAIN}bobpw\n")
        yield path


def login_ok(path: Path, timeout: float = 10.0) -> bool:
    with AuthClient.connect(str(path), timeout=timeout) as client:
        client.handshake()
        reply = client.auth(f"AUTH\t1\tPLAIN\tservice=smtp\tresp={plain_b64('', 'bob', 'bobpw')}")
        return reply == "OK\t1\tuser=bob"


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def kill_tree(pid: int) -> None:
    """SIGKILL a master and its children, as systemd does to the whole cgroup."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
    for victim in (pid, *children):
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


# ---- unit files ------------------------------------------------------------------------------
def _units_copy(directory: Path) -> list[Path]:
    """The shipped units; ExecStart= points at a stand-in if saslauth is not installed there."""
    copies = []
    for unit in ("saslauth.socket", "saslauth.service"):
        text = (UNITS / unit).read_text()
        if not os.access(INSTALLED, os.X_OK):
            text = text.replace(INSTALLED, "/bin/true")
        copies.append(directory / unit)
        copies[-1].write_text(text)
    return copies


def test_units_verify_and_security(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not found (apt-get install systemd)")
    units = _units_copy(tmp_path)
    verify = subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    broken = tmp_path / "broken" / "saslauth.service"
    broken.parent.mkdir()
    broken.write_text(units[1].read_text().replace("Type=notify", "Type=notifyy"))
    shutil.copy(units[0], broken.parent)
    bad = subprocess.run(
        ["systemd-analyze", "verify", str(broken)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "notifyy" in bad.stderr  # the check does look at what we ship
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=30", str(units[1])],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    match = re.search(r"Overall exposure level for saslauth.service: (\d+\.\d)", security.stdout)
    assert match is not None, security.stdout + security.stderr
    assert float(match.group(1)) <= 3.0 and security.returncode == 0, security.stdout[-2000:]


def test_every_relaxation_is_commented() -> None:
    text = (UNITS / "saslauth.service").read_text()
    hardening = text.split("# ---- hardening", 1)[1]
    for directive in ("ReadWritePaths=", "RestrictAddressFamilies=", "CapabilityBoundingSet="):
        assert directive in hardening
    assert hardening.count("# Relaxation:") >= 4
    socket_unit = (UNITS / "saslauth.socket").read_text()
    for line in ("ListenStream=/var/spool/postfix/private/auth", "SocketUser=postfix",
                 "SocketMode=0660", "FileDescriptorName=auth"):  # fmt: skip
        assert line in socket_unit


# ---- socket activation -----------------------------------------------------------------------
def test_systemd_socket_activate_serves_the_inherited_socket(work: Path) -> None:
    launcher = shutil.which("systemd-socket-activate")
    if launcher is None:
        pytest.skip("systemd-socket-activate not found (apt-get install systemd)")
    path = work / "auth"
    config = work / "saslauth.yaml"
    config.write_text(config_text(path, work / "users", name="auth"))
    log = work / "daemon.log"
    env = daemon_env()
    with log.open("ab") as handle:
        proc = subprocess.Popen(
            [launcher, "-l", str(path), "--fdname=auth", "-E", "PYTHONPATH", "-E",
             "PYTHONUNBUFFERED", sys.executable, "-m", "saslauth", "serve", "--config",
             str(config)],
            stdout=handle, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        wait_until(path.exists, 10, what="systemd-socket-activate's socket")
        inode = path.stat().st_ino
        assert login_ok(path, timeout=15)  # the first connection makes it start saslauth
        assert "using socket 'auth'" in log.read_text() and "passed by systemd" in log.read_text()
        assert path.stat().st_ino == inode  # served on the very socket systemd made
    finally:
        assert stop(proc) == 0, log.read_text()


def _started(log: Path, times: int) -> bool:
    return log.read_text().count("front(s) ready") == times  # the master's: every front serves


def test_restarts_never_leave_the_path_without_a_listener(work: Path) -> None:
    path = work / "auth"
    config = work / "saslauth.yaml"
    config.write_text(config_text(path, work / "users", name="auth"))
    log = work / "daemon.log"
    held = listening_unix_socket(path)  # the socket unit's copy: outlives every daemon
    refused: list[str] = []  # connect() failed: the path had no listener (must never happen)
    dropped: list[str] = []  # accepted by a daemon that was then killed (a crash's victims)
    greeted = 0
    served: list[tuple[float, float]] = []  # when each greeted probe connected, was greeted
    windows: list[tuple[float, float]] = []  # when no daemon ran
    done = threading.Event()

    def probe() -> None:
        nonlocal greeted
        while not done.is_set():
            try:
                client = AuthClient.connect(str(path), timeout=20)
                when = time.monotonic()
            except OSError as exc:
                refused.append(repr(exc))
                continue
            try:
                client.read_greeting(timeout=20)
                greeted += 1
                served.append((when, time.monotonic()))
            except (OSError, ConnectionClosed) as exc:
                dropped.append(repr(exc))
            finally:
                client.close()
            time.sleep(0.01)

    proc = launch_with_socket(held, config, log)
    prober = threading.Thread(target=probe)
    kills = 2
    try:
        assert login_ok(path, timeout=15)
        # one front can serve before the master has heard every front's READY: wait for that
        # too, or the daemon may be killed before it says so, and the count below is one short
        wait_until(partial(_started, log, 1), 15, what="every front of the first daemon")
        prober.start()
        for run in range(kills):
            start = time.monotonic()
            kill_tree(proc.pid)  # a crash: master and children die at once
            proc.wait(10)
            time.sleep(0.3)  # nothing runs: connections wait in the socket's backlog
            assert path.exists()
            windows.append((start, time.monotonic()))
            proc = launch_with_socket(held, config, log)
            wait_until(partial(_started, log, run + 2), 15, what="the restarted daemon")
            assert login_ok(path, timeout=15)
        done.set()
        prober.join(30)
        assert refused == [] and greeted > kills, (refused, greeted)
        for start, end in windows:  # someone connected while no daemon ran, served by the next
            assert any(start <= c <= end <= g for c, g in served), (windows, served)
        assert len(dropped) <= kills, dropped
    finally:
        done.set()
        stop(proc)
        held.close()


# ---- sd_notify -------------------------------------------------------------------------------
def test_notify_ready_reloading_stopping_watchdog(work: Path) -> None:
    path = work / "auth"
    config = work / "saslauth.yaml"
    config.write_text(config_text(path, work / "users"))
    log = work / "daemon.log"
    with NotifyReceiver(work / "notify") as receiver, log.open("ab") as handle:
        env = daemon_env(NOTIFY_SOCKET=str(receiver.path), WATCHDOG_USEC="400000")
        proc = subprocess.Popen(
            [sys.executable, "-m", "saslauth", "serve", "--config", str(config)],
            stdout=handle, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            ready = receiver.wait_for("READY")
            assert "STATUS" in ready and login_ok(path)  # READY=1 only once it really serves
            receiver.wait_for("WATCHDOG")
            proc.send_signal(signal.SIGHUP)
            reloading = receiver.wait_for("RELOADING")
            assert reloading["MONOTONIC_USEC"].isdigit()
            assert "reloaded" in receiver.wait_for("READY")["STATUS"]
            config.write_text(config.read_text() + "bogus_key: 1\n")
            proc.send_signal(signal.SIGHUP)
            receiver.wait_for("RELOADING")
            assert "reload failed" in receiver.wait_for("READY")["STATUS"]
            assert f"reload failed: {config}:10: bogus_key" in log.read_text()
            assert login_ok(path)  # still serving the previous configuration
            proc.send_signal(signal.SIGTERM)
            receiver.wait_for("STOPPING")
            assert proc.wait(20) == 0
        finally:
            stop(proc)
