"""End to end with a real Postfix (throwaway instance) and swaks: real SMTP AUTH via saslauth."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.ports import public_tmpdir, wait_until
from tests.fixtures.postfix import Postfix, postfix_skip_reason, start_postfix, swaks_auth
from tests.fixtures.saslauth import Saslauth, running, write_config

pytestmark = [pytest.mark.postfix, pytest.mark.root]


@dataclass
class Setup:
    postfix: Postfix
    saslauth: Saslauth
    passwd: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    reason = postfix_skip_reason()
    if reason:
        pytest.skip(reason)
    from saslauth import schemes

    with public_tmpdir() as work:
        passwd = work / "users"
        passwd.write_text(
            f"alice@example.test:{schemes.generate('SHA512-CRYPT', b'wonderland')}\n"
            "bob@example.test:{PLAIN}bobpw\n"
        )
        passwd.chmod(0o600)
        config = write_config(
            work,
            passwd,
            failure_delay="1s",
            socket_owner="postfix",  # mode 0660, owned by postfix, as in production
            extra="tempfail: disconnect\nauth_log: all\n",
        )
        with running(config, work / "auth") as daemon:
            postfix = start_postfix(
                tmp_path_factory.mktemp("postfix"), sasl_path=str(work / "auth")
            )
            try:
                yield Setup(postfix, daemon, passwd)
            finally:
                postfix.stop()


def test_plain_and_login_succeed(setup: Setup) -> None:
    port = setup.postfix.smtp_port
    plain = swaks_auth(port, user="alice@example.test", password="wonderland", mech="PLAIN")
    assert plain.auth_code == 235, plain.output
    login = swaks_auth(port, user="bob@example.test", password="bobpw", mech="LOGIN")
    assert login.auth_code == 235, login.output
    setup.postfix.wait_maillog("sasl_method=LOGIN, sasl_username=bob@example.test")


def test_wrong_password_and_unknown_user_get_535(setup: Setup) -> None:
    port = setup.postfix.smtp_port
    wrong = swaks_auth(port, user="alice@example.test", password="nope")
    unknown = swaks_auth(port, user="nobody@example.test", password="nope")
    assert wrong.auth_code == unknown.auth_code == 535
    assert wrong.auth_reply == unknown.auth_reply  # nothing tells them apart


def test_starttls_login_is_marked_secured(setup: Setup) -> None:
    result = swaks_auth(
        setup.postfix.smtp_port, user="bob@example.test", password="bobpw", tls=True
    )
    assert result.auth_code == 235, result.output
    setup.saslauth.wait_log("result=ok user=bob@example.test mech=PLAIN service=smtp")
    assert "secured=yes" in setup.saslauth.log_text()


def test_verifier_killed_then_next_login_works(setup: Setup) -> None:
    pid = setup.saslauth.wait_children()["verifier"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: setup.saslauth.children().get("verifier", pid) != pid, 10, what="restart")
    result = swaks_auth(setup.postfix.smtp_port, user="bob@example.test", password="bobpw")
    assert result.auth_code == 235, result.output


def test_passwd_file_outage_gives_454_then_recovers(setup: Setup) -> None:
    away = setup.passwd.with_suffix(".away")
    setup.passwd.rename(away)
    try:
        down = swaks_auth(setup.postfix.smtp_port, user="bob@example.test", password="bobpw")
        assert down.auth_code == 454, down.output
    finally:
        away.rename(setup.passwd)
    up = swaks_auth(setup.postfix.smtp_port, user="bob@example.test", password="bobpw")
    assert up.auth_code == 235, up.output
