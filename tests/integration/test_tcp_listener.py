"""TCP listeners: served on loopback, and peers outside ``allow`` are refused before the greeting.

Postfix can only talk to a TCP auth socket in clear text (``inet:host:port``), so the allow list
is what keeps other hosts from using saslauth as a password oracle.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.authclient import AuthClient, ConnectionClosed, plain_b64
from tests.fixtures.ports import free_tcp_ports, public_tmpdir
from tests.fixtures.saslauth import REPO, Saslauth, running, write_config


@pytest.fixture
def daemon() -> Iterator[tuple[Saslauth, int, int]]:
    with public_tmpdir() as work:
        passwd = work / "users"
        passwd.write_text("bob:{PLAIN}bobpw\n")
        open_port, closed_port = free_tcp_ports(2)
        config = write_config(work, passwd)
        text = config.read_text().replace(
            "passdb:\n",
            f"  - address: 127.0.0.1:{open_port}\n"
            f"  - address: 127.0.0.1:{closed_port}\n"
            "    allow: [192.0.2.0/24, '::1/128']\n"
            "passdb:\n",
        )
        config.write_text(text)
        with running(config, work / "auth") as server:
            yield server, open_port, closed_port


def _cli(address: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run(
        [sys.executable, "-m", "saslauth.testclient", "-s", address, "-u", "bob", "-p", "bobpw"],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )


def test_tcp_listener_serves_loopback(daemon: tuple[Saslauth, int, int]) -> None:
    _, port, _ = daemon
    result = _cli(f"127.0.0.1:{port}")
    assert (result.returncode, result.stdout.strip()) == (0, "OK user=bob")
    with AuthClient.connect(f"127.0.0.1:{port}") as client:
        client.handshake()
        resp = plain_b64("", "bob", "bobpw")
        assert client.auth(f"AUTH\t1\tPLAIN\tservice=smtp\tresp={resp}") == "OK\t1\tuser=bob"


def test_peer_outside_allow_gets_no_greeting(daemon: tuple[Saslauth, int, int]) -> None:
    server, _, port = daemon
    with AuthClient.connect(f"127.0.0.1:{port}") as client, pytest.raises(ConnectionClosed):
        client.read_greeting(timeout=5)
    result = _cli(f"127.0.0.1:{port}")
    assert result.returncode == 2
    server.wait_log("refused connection from 127.0.0.1")
    assert "not in allow" in server.log_text()
    # the refusal is per connection: the daemon keeps serving the other listeners
    assert _cli(str(Path(server.address))).returncode == 0
