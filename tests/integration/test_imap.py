"""``driver: imap`` against a real, throwaway Dovecot IMAP server (and once through Postfix).

Dovecot listens on 127.0.0.1 with STARTTLS on ``port`` and implicit TLS on ``tls_port``, a
certificate from a test CA (tests/fixtures/tlsca.py).  The driver is first exercised in-process
(every TLS mode, awkward passwords, wrong certificates), then through the real ``saslauth
serve`` (temporary failures reach the client, recovery without a restart, Postfix).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, cast

import pytest

from saslauth.config import ImapSettings
from saslauth.errors import BackendError
from saslauth.passdb import Verdict
from saslauth.passdb.imap import Imap
from saslauth.verifier import VerifyRequest
from tests.fixtures.dovecot import DovecotImap, start_dovecot_imap, write_passwd_file
from tests.fixtures.ports import public_tmpdir, wait_until
from tests.fixtures.saslauth import REPO, Saslauth, running
from tests.fixtures.tlsca import make_test_ca

pytestmark = [pytest.mark.dovecot, pytest.mark.root]

#: Passwords that need quoting, escaping, literals or AUTHENTICATE (no ":" -- passwd-file).
SPECIAL = {
    "space": "with some spaces ",
    "quotes": 'say "cheese" \'twice\'',
    "backslash": "back\\slash\\",
    "brace": "{5}\\{3}abc{",
    "utf8": "pässwörd €uro ✓ 密码",
    "long": "x" * 900 + "!",
    "longutf8": "é" * 450,
    "verylong": "Z9" * 1500,
}
USERS = {"alice": ("secret", ""), **{name: (pw, "") for name, pw in SPECIAL.items()}}


@pytest.fixture(scope="module")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotImap]:
    tmp = tmp_path_factory.mktemp("imap")
    server = start_dovecot_imap(tmp / "dovecot", write_passwd_file(tmp / "users", USERS), tls=True)
    try:
        yield server
    finally:
        server.stop()


def settings(server: DovecotImap, tls: str, **extra: Any) -> ImapSettings:
    port = server.tls_port if tls == "implicit" else server.port
    options: dict[str, Any] = {"port": port, "tls": tls, "ca_file": str(server.ca_file)}
    options.update(extra)
    return ImapSettings(driver="imap", host="127.0.0.1", **options)


def check(imap: ImapSettings, user: str, password: str) -> Verdict:
    driver = Imap(imap, cast(Executor, None))
    lookup = asyncio.run(driver.verify_plain(VerifyRequest(user, password.encode())))
    return lookup.verdict


def check_error(imap: ImapSettings) -> str:
    """The outage a good login for alice runs into."""
    with pytest.raises(BackendError) as info:
        check(imap, "alice", "secret")
    return str(info.value)


@pytest.mark.parametrize("tls", ["implicit", "starttls", "none"])
def test_each_tls_mode_logs_in_and_refuses_a_wrong_password(
    dovecot: DovecotImap, tls: str
) -> None:
    imap = settings(dovecot, tls)
    logins = re.compile(r"imap-login: Info: Login: user=<alice>, method=PLAIN, .*, (TLS|secured),")
    before = logins.findall(dovecot.log_text())
    assert check(imap, "alice", "secret") is Verdict.OK
    assert check(imap, "alice", "Secret") is Verdict.PASSWORD_MISMATCH
    assert check(imap, "nobody", "secret") is Verdict.PASSWORD_MISMATCH
    wait_until(lambda: len(logins.findall(dovecot.log_text())) > len(before), 5, what="login")
    # Dovecot logs "TLS" for a TLS session, "secured" for plaintext on loopback.
    assert logins.findall(dovecot.log_text())[len(before) :] == [
        "secured" if tls == "none" else "TLS"
    ]


@pytest.mark.parametrize("name", sorted(SPECIAL))
def test_special_passwords(dovecot: DovecotImap, name: str) -> None:
    imap = settings(dovecot, "implicit")
    password = SPECIAL[name]
    assert check(imap, name, password) is Verdict.OK
    assert check(imap, name, password[:-1]) is Verdict.PASSWORD_MISMATCH


def test_wrong_certificates_are_refused(dovecot: DovecotImap, tmp_path: Path) -> None:
    other = make_test_ca(tmp_path / "other-ca")
    for tls in ("implicit", "starttls"):
        wrong_ca = check_error(settings(dovecot, tls, ca_file=str(other.ca_cert)))
        assert "certificate rejected: unable to get local issuer certificate" in wrong_ca
        wrong_name = check_error(settings(dovecot, tls, server_name="mail.wrong.test"))
        assert "certificate rejected: Hostname mismatch" in wrong_name
    system_cas = check_error(settings(dovecot, "implicit", ca_file=None))
    assert "certificate rejected" in system_cas
    assert "secret" not in wrong_ca + wrong_name + system_cas
    # Explicitly switched off, the same server is accepted (check-config warns about it).
    unverified = settings(dovecot, "implicit", ca_file=None, tls_verify=False)
    assert check(unverified, "alice", "secret") is Verdict.OK


def test_plaintext_port_without_tls_where_implicit_is_expected(dovecot: DovecotImap) -> None:
    imap = settings(dovecot, "implicit", port=dovecot.port, connect_timeout=1.0)
    assert "TLS failed: WRONG_VERSION_NUMBER" in check_error(imap)


# ---- through the real daemon -----------------------------------------------------------------


def imap_config(work: Path, passdb: str, *, socket_owner: str = "") -> Path:
    owner = f"    user: {socket_owner}\n    group: {socket_owner}\n" if socket_owner else ""
    config = work / "saslauth.yaml"
    config.write_text(
        "user: nobody\n"
        "failure_delay: 0\n"
        "auth_log: all\n"
        "listen:\n"
        f"  - path: {work / 'auth'}\n"
        f'    mode: "{"0660" if socket_owner else "0666"}"\n'
        f"{owner}"
        "passdb:\n"
        f"{passdb}"
    )
    return config


def passdb_yaml(port: int, tls: str, **keys: str) -> str:
    lines = ["  - driver: imap", "    host: 127.0.0.1", f"    port: {port}", f"    tls: {tls}"]
    lines += [f"    {key}: {value}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


def login(daemon: Saslauth, user: str, password: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run(
        [sys.executable, "-c", "import sys; from saslauth.testclient import main; sys.exit(main())",
         "-s", daemon.address, "-u", user, "-p", password],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )  # fmt: skip


def test_wrong_certificate_is_a_logged_temporary_failure(dovecot: DovecotImap) -> None:
    with public_tmpdir() as work:
        passdb = passdb_yaml(
            dovecot.port, "starttls", ca_file=str(dovecot.ca_file), server_name="mail.wrong.test"
        )
        with running(imap_config(work, passdb), work / "auth") as daemon:
            result = login(daemon, "alice", "secret")
            assert result.returncode == 2, result.stdout + result.stderr
            daemon.wait_log("certificate rejected: Hostname mismatch")
            assert "result=tempfail user=alice" in daemon.log_text()
            assert "secret" not in daemon.log_text()


def test_server_stopped_then_back_needs_no_restart(tmp_path: Path) -> None:
    passwd = write_passwd_file(tmp_path / "users", {"alice": ("secret", "")})
    first = start_dovecot_imap(tmp_path / "dv1", passwd, tls=False)
    port, second = first.port, None
    try:
        with public_tmpdir() as work:
            config = imap_config(work, passdb_yaml(port, "none", timeout="2s"))
            with running(config, work / "auth") as daemon:
                assert login(daemon, "alice", "secret").returncode == 0
                first.stop()
                down = login(daemon, "alice", "secret")
                assert down.returncode == 2, down.stdout
                daemon.wait_log("Connection refused")
                assert login(daemon, "alice", "wrong").returncode == 2  # no false "wrong"
                second = start_dovecot_imap(tmp_path / "dv2", passwd, tls=False, port=port)
                back = login(daemon, "alice", "secret")
                assert back.returncode == 0, back.stdout + daemon.log_text()
                assert login(daemon, "alice", "wrong").returncode == 1
    finally:
        first.stop()
        if second is not None:
            second.stop()


@pytest.mark.postfix
def test_one_login_through_postfix(dovecot: DovecotImap, tmp_path: Path) -> None:
    from tests.fixtures.postfix import postfix_skip_reason, start_postfix, swaks_auth

    reason = postfix_skip_reason()
    if reason:
        pytest.skip(reason)
    with public_tmpdir() as work:
        passdb = passdb_yaml(dovecot.tls_port or 0, "implicit", ca_file=str(dovecot.ca_file))
        config = imap_config(work, passdb, socket_owner="postfix")
        with running(config, work / "auth") as daemon:
            postfix = start_postfix(tmp_path / "postfix", sasl_path=str(work / "auth"))
            try:
                good = swaks_auth(postfix.smtp_port, user="utf8", password=SPECIAL["utf8"])
                assert good.auth_code == 235, good.output
                bad = swaks_auth(postfix.smtp_port, user="alice", password="nope")
                assert bad.auth_code == 535, bad.output
            finally:
                postfix.stop()
            daemon.wait_log("result=ok user=utf8")
