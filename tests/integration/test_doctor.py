"""``saslauth doctor`` against a real Postfix configuration and a running saslauth."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.ports import public_tmpdir
from tests.fixtures.postfix import Postfix, postfix_skip_reason, start_postfix, swaks_auth
from tests.fixtures.saslauth import REPO, Saslauth, running, write_config

pytestmark = [pytest.mark.postfix, pytest.mark.root]


@dataclass
class Setup:
    postfix: Postfix
    saslauth: Saslauth
    service: str  # the fixture's smtpd service name, "127.0.0.1:PORT/inet"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    reason = postfix_skip_reason()
    if reason:
        pytest.skip(reason)
    with public_tmpdir("sadr-") as work:
        passwd = work / "users"
        passwd.write_text("bob@example.test:{PLAIN}bobpw\n")
        config = write_config(work, passwd)
        with running(config, work / "auth") as daemon:
            postfix = start_postfix(
                tmp_path_factory.mktemp("postfix"), sasl_path=str(work / "auth"), submission=False
            )
            try:
                service = f"127.0.0.1:{postfix.smtp_port}/inet"
                yield Setup(postfix, daemon, service)
            finally:
                postfix.stop()


def doctor(setup: Setup, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run(
        [sys.executable, "-m", "saslauth", "doctor", "--postfix-config",
         str(setup.postfix.config_dir), *args],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


@contextlib.contextmanager
def postconf(setup: Setup, *args: str, undo: tuple[str, ...]) -> Iterator[None]:
    base = ["postconf", "-c", str(setup.postfix.config_dir)]
    subprocess.run([*base, *args], check=True, timeout=30)
    try:
        yield
    finally:
        subprocess.run([*base, *undo], check=True, timeout=30)


def test_healthy_setup(setup: Setup) -> None:
    result = doctor(setup, "-u", "bob@example.test", "-p", "bobpw")
    assert result.returncode == 0, result.stdout
    socket = setup.saslauth.socket
    assert f"ok    {setup.service}: {socket} exists and is a socket" in result.stdout
    assert f"ok    {setup.service}: {socket}: user postfix may connect" in result.stdout
    assert "Dovecot handshake, mechanisms PLAIN LOGIN" in result.stdout
    assert "test login as bob@example.test: OK" in result.stdout
    assert "no problems found" in result.stdout
    # ... and it really is healthy
    login = swaks_auth(setup.postfix.smtp_port, user="bob@example.test", password="bobpw")
    assert login.auth_code == 235, login.output


def test_chrooted_smtpd_with_the_socket_outside(setup: Setup) -> None:
    with postconf(setup, "-F", f"{setup.service}/chroot = y",
                  undo=("-F", f"{setup.service}/chroot = n")):  # fmt: skip
        result = doctor(setup)
    assert result.returncode == 1
    queue = setup.postfix.queue_dir
    assert (
        f"FAIL  {setup.service} runs chrooted in {queue}, so it looks for "
        f"{queue}{setup.saslauth.socket}; the socket {setup.saslauth.socket} is outside the chroot"
    ) in result.stdout, result.stdout
    assert "set smtpd_sasl_path = private/auth" in result.stdout


def test_wrong_socket_path(setup: Setup) -> None:
    wrong = setup.saslauth.directory / "atuh"
    with postconf(setup, "-e", f"smtpd_sasl_path={wrong}",
                  undo=("-e", f"smtpd_sasl_path={setup.saslauth.socket}")):  # fmt: skip
        result = doctor(setup)
    assert result.returncode == 1
    assert f"FAIL  {setup.service}: {wrong} does not exist" in result.stdout, result.stdout
    assert "no SASL authentication mechanisms" in result.stdout


def test_wrong_permissions(setup: Setup) -> None:
    socket: Path = setup.saslauth.socket
    socket.chmod(0o600)  # owned by root: postfix may not connect
    try:
        result = doctor(setup)
    finally:
        socket.chmod(0o666)
    assert result.returncode == 1
    assert (
        f"FAIL  user postfix may not connect to {socket}: the socket is mode 0600, owner "
        "root:root (connecting needs write permission)"
    ) in result.stdout, result.stdout
    assert 'mode: "0660"' in result.stdout


def test_not_dovecot_type(setup: Setup) -> None:
    with postconf(setup, "-e", "smtpd_sasl_type=cyrus", undo=("-e", "smtpd_sasl_type=dovecot")):
        result = doctor(setup)
    assert result.returncode == 1
    assert f"FAIL  {setup.service}: smtpd_sasl_type = cyrus" in result.stdout
