"""saslauth doctor's verdicts on synthetic Postfix views (the real ones: integration tests)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from saslauth.doctor import diagnose
from saslauth.postfixconf import PostfixView, SmtpdService


def _service(path: str, *, enabled: bool = True, socket_path: str = "") -> SmtpdService:
    return SmtpdService("submission/inet", False, enabled, "dovecot", path, socket_path)


def test_no_service_with_sasl() -> None:
    view = PostfixView("/var/spool/postfix", "postfix", (_service("private/auth", enabled=False),))
    report = diagnose(view)
    assert report.failures == 1 and "smtpd_sasl_auth_enable = yes" in report.lines[0]


def test_inet_path_that_does_not_greet(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def accept_and_close() -> None:
            conn, _ = server.accept()
            conn.sendall(b"220 smtp.example ESMTP\r\n")  # not an auth server
            conn.close()

        thread = threading.Thread(target=accept_and_close)
        thread.start()
        view = PostfixView("/q", "postfix", (_service(f"inet:127.0.0.1:{port}"),))
        report = diagnose(view)
        thread.join(5)
    assert report.failures == 1
    assert "no Dovecot auth greeting" in report.lines[0] or "not a Dovecot" in report.lines[0]


def test_stale_socket(tmp_path: Path) -> None:
    path = tmp_path / "auth"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))  # bound, never listening: like a socket left by a dead daemon
        view = PostfixView(str(tmp_path), "postfix", (_service(str(path), socket_path=str(path)),))
        report = diagnose(view)
    assert report.failures == 1
    assert any("nothing is listening" in line for line in report.lines), report.lines
