"""A TCP listener refuses clients outside ``allow:`` before the handshake."""

from __future__ import annotations

from tests.fixtures.authclient import AuthClient
from tests.fixtures.limits import users_file
from tests.fixtures.ports import free_tcp_port, public_tmpdir, wait_until
from tests.fixtures.saslauth import running, write_config


def test_tcp_listener_outside_allow_gets_no_greeting() -> None:
    with public_tmpdir() as directory:
        refused, allowed = free_tcp_port(), free_tcp_port()
        extra = (
            "listen:\n"
            f"  - path: {directory / 'auth'}\n"
            '    mode: "0666"\n'
            f"  - address: 127.0.0.1:{refused}\n"
            "    allow: [10.0.0.0/8]\n"
            f"  - address: 127.0.0.1:{allowed}\n"
        )
        config = write_config(directory, users_file(directory))
        text = config.read_text()
        head, _, rest = text.partition("listen:\n")
        rest = rest[rest.index("passdb:"):]
        config.write_text(head + extra + rest)
        with running(config, directory / "auth") as daemon:
            with AuthClient.connect(f"127.0.0.1:{refused}") as client:
                assert client.is_closed(timeout=3)
            wait_until(lambda: "not in allow" in daemon.log_text(), 5, what="refusal logged")
            with AuthClient.connect(f"127.0.0.1:{allowed}") as client:
                assert client.handshake()[-1] == "DONE"
