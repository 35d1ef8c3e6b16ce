"""saslauth.systemd (sd_notify, LISTEN_FDS), listener matching, postfixconf paths, reload bits."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from saslauth import config, listeners, postfixconf, reload, systemd


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_USEC",
                "WATCHDOG_PID"):  # fmt: skip
        monkeypatch.delenv(key, raising=False)


@pytest.mark.usefixtures("clean_env")
def test_notify_to_path_and_abstract_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert systemd.notify("READY=1") is False  # no service manager: a no-op
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(tmp_path / "notify"))
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
        assert systemd.notify("READY=1", "STATUS=up")
        assert receiver.recv(100) == b"READY=1\nSTATUS=up"
    name = f"saslauth-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("STOPPING=1")
        assert receiver.recv(100) == b"STOPPING=1"
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/path")
    assert systemd.notify("READY=1") is False


@pytest.mark.usefixtures("clean_env")
def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    assert systemd.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert systemd.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert systemd.watchdog_interval() is None


@pytest.fixture
def passed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[socket.socket]]:
    """A UNIX and a TCP listening socket placed at fds 200 and 201 (SD_LISTEN_FDS_START)."""
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(str(tmp_path / "auth"))
    unix.listen()
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    for fd, sock in ((200, unix), (201, tcp)):
        os.dup2(sock.fileno(), fd)
        sock.close()
    monkeypatch.setattr(systemd, "SD_LISTEN_FDS_START", 200)
    monkeypatch.setenv("LISTEN_FDS", "2")
    monkeypatch.setenv("LISTEN_FDNAMES", "auth:tcp")
    socks = [socket.socket(fileno=os.dup(200)), socket.socket(fileno=os.dup(201))]
    yield socks
    for fd in (200, 201):
        with contextlib.suppress(OSError):
            os.close(fd)
    for sock in socks:
        sock.close()


@pytest.mark.usefixtures("clean_env")
def test_listen_fds_only_for_our_pid(
    passed: list[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    assert systemd.listen_fds() == []
    assert "LISTEN_FDS" not in os.environ  # unset either way: children must not take them


@pytest.mark.usefixtures("clean_env")
def test_listen_fds_names_and_addresses(
    passed: list[socket.socket], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    found = systemd.listen_fds()
    port = passed[1].getsockname()[1]
    assert [(i.name, i.address) for i in found] == [
        ("auth", str(tmp_path / "auth")),
        ("tcp", f"127.0.0.1:{port}"),
    ]
    assert not os.get_inheritable(200) and "LISTEN_PID" not in os.environ
    for item in found:
        item.sock.detach()  # the fixture closes fds 200 and 201


def _config(text: str) -> config.Config:
    return config.parse(text + "passdb:\n  - driver: passwd-file\n    path: /x\n", "t.yaml")


@pytest.mark.usefixtures("clean_env")
def test_bind_all_matches_by_name_then_path(
    passed: list[socket.socket],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    inherited = systemd.listen_fds()
    own = tmp_path / "own"
    cfg = _config(
        "listen:\n"
        f"  - path: {tmp_path / 'auth'}\n"  # same path as the passed one, no name
        f"  - path: {own}\n"  # nothing passed: bound by us
        "    name: tcp-is-not-this\n"
    )
    bound = listeners.bind_all(cfg, tmp_path, inherited)
    assert bound[0][0] is inherited[0].sock and own.exists()
    assert "no listen: entry names or matches" in caplog.text  # the TCP one is closed
    assert inherited[1].sock.fileno() == -1
    inherited[0].sock.detach()
    bound[1][0].close()


@pytest.mark.usefixtures("clean_env")
def test_bind_all_refuses_a_socket_of_the_wrong_kind(
    passed: list[socket.socket], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    inherited = systemd.listen_fds()
    cfg = _config(f"listen:\n  - path: {tmp_path / 'x'}\n    name: tcp\n")
    with pytest.raises(OSError, match="does not fit listener"):
        listeners.bind_all(cfg, tmp_path, inherited)
    for item in inherited:
        item.sock.detach()


@pytest.mark.parametrize(
    ("sasl_path", "chroot", "expected"),
    [
        ("private/auth", False, "/var/spool/postfix/private/auth"),
        ("private/auth", True, "/var/spool/postfix/private/auth"),
        ("/run/saslauth/auth", False, "/run/saslauth/auth"),
        ("/run/saslauth/auth", True, "/var/spool/postfix/run/saslauth/auth"),
        ("unix:private/auth", False, "/var/spool/postfix/private/auth"),
        ("inet:127.0.0.1:12345", True, ""),
    ],
)
def test_effective_socket(sasl_path: str, chroot: bool, expected: str) -> None:
    assert postfixconf.effective_socket(sasl_path, "/var/spool/postfix", chroot=chroot) == expected


def test_reload_keeps_listen_and_user_and_passes_front_settings() -> None:
    old = _config("user: nobody\nlisten:\n  - path: /a\n")
    new = _config("user: daemon\nfailure_delay: 1s\nmechanisms: [PLAIN]\nlisten:\n  - path: /b\n")
    merged, notes = reload.merge(old, new)
    assert merged.listen == old.listen and merged.user == "nobody"
    assert merged.failure_delay == 1.0 and len(notes) == 2 and notes[0].startswith("listen:")
    settings = reload.read_settings(reload.settings_fd(merged))
    applied = settings.apply(old)
    assert applied.mechanisms == ("PLAIN",) and applied.failure_delay == 1.0
    assert applied.passdb == old.passdb
    pinning = _config("user: nobody\npin_fronts: true\nlisten:\n  - path: /a\n")
    pinned, notes = reload.merge(old, pinning)
    assert pinned.pin_fronts == "auto"  # the running value, the default
    assert notes == [
        "pin_fronts: changed, takes effect after a restart (keeping the running value)"
    ]


def test_journal_priorities_under_systemd(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from saslauth import logs

    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.setup("info", "saslauth")
    try:
        logging.getLogger("saslauth").error("reload failed: x.yaml:2: failure_delay: too long")
        logging.getLogger("saslauth").info("reloaded")
        assert capsys.readouterr().err.splitlines() == [
            "<3>saslauth: reload failed: x.yaml:2: failure_delay: too long",
            "<6>saslauth: reloaded",
        ]
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
