"""The real daemon with an ldap passdb against a real slapd, and one login through Postfix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from saslauth import schemes
from saslauth.testclient import main as saslauth_test
from saslauth.usernames import DEFAULT_ALLOWED_CHARS
from tests.fixtures.authclient import AuthClient, plain_b64
from tests.fixtures.ports import free_tcp_port, public_tmpdir
from tests.fixtures.postfix import postfix_skip_reason, start_postfix, swaks_auth
from tests.fixtures.saslauth import Saslauth, running
from tests.fixtures.slapd import BASE_DN, READER_DN, READER_PASSWORD, Slapd, start_slapd, user_ldif

pytest.importorskip("ldap3")

# Let filter and DN syntax through the front's name check, so the driver's escaping is tested.
ALLOWED = DEFAULT_ALLOWED_CHARS + "*()\\ #,+=;<>\"'"
LDIF = user_ldif("alice", schemes.generate("SSHA", b"wonderland")) + user_ldif(
    "bob", "{CRYPT}" + schemes.generate("SHA512-CRYPT", b"bob pw").split("}", 1)[1]
)


@dataclass
class Setup:
    slapd: Slapd
    daemon: Saslauth


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    slapd = start_slapd(tmp_path_factory.mktemp("slapd"), LDIF)
    try:
        with public_tmpdir() as work:
            secret = work / "reader.secret"
            secret.write_text(READER_PASSWORD + "\n")
            secret.chmod(0o600)
            dead = f"ldap://127.0.0.1:{free_tcp_port()}"  # the first URI is down all along
            config = work / "saslauth.yaml"
            config.write_text(
                "user: nobody\n"
                "failure_delay: 0\n"
                "username:\n"
                f"  allowed_chars: {json.dumps(ALLOWED)}\n"  # a YAML double-quoted string
                f'listen:\n  - path: {work / "auth"}\n    mode: "0666"\n'
                "passdb:\n"
                "  - driver: ldap\n"
                f"    uris: [{dead}, {slapd.uri}]\n"
                "    tls: starttls\n"
                f"    ca_file: {slapd.ca.ca_cert}\n"
                f"    base: {BASE_DN}\n"
                f"    bind_dn: {READER_DN}\n"
                "    bind_password_file: reader.secret\n"  # relative to the config file
                "    timeout: 2s\n"
            )
            with running(config, work / "auth") as daemon:
                yield Setup(slapd, daemon)
    finally:
        slapd.stop()


def login(setup: Setup, user: str, password: str, capsys: pytest.CaptureFixture[str]) -> int:
    code = saslauth_test(["-s", setup.daemon.address, "-u", user, "-p", password])
    capsys.readouterr()
    return code


def test_logins(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    assert login(setup, "alice", "wonderland", capsys) == 0
    assert login(setup, "bob", "bob pw", capsys) == 0
    assert login(setup, "alice", "wonderlanx", capsys) == 1
    assert login(setup, "mallory", "wonderland", capsys) == 1


@pytest.mark.parametrize(
    "name", ["*", "al*", "alice)(uid=*", "*)(objectClass=*", "alice\\", " alice", "#616c696365"]
)
def test_injection_through_the_protocol(
    setup: Setup, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert login(setup, name, "wonderland", capsys) == 1  # a plain failure, not a tempfail


def test_empty_password_fails(setup: Setup) -> None:
    with AuthClient.connect(setup.daemon.address) as client:
        client.handshake()
        reply = client.auth(f"AUTH\t1\tPLAIN\tservice=smtp\tresp={plain_b64('', 'alice', '')}")
    assert reply is not None and reply.startswith("FAIL\t1"), reply
    assert "temp" not in reply


def test_slapd_stopped_then_back(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    setup.slapd.stop()
    try:
        assert login(setup, "alice", "wonderland", capsys) == 2  # temporary failure
    finally:
        setup.slapd.start()
    assert login(setup, "alice", "wonderland", capsys) == 0  # no restart of saslauth
    assert "wonderland" not in setup.daemon.log_text()


@pytest.mark.postfix
@pytest.mark.root
def test_login_through_postfix(setup: Setup, tmp_path: Path) -> None:
    reason = postfix_skip_reason()
    if reason:
        pytest.skip(reason)
    postfix = start_postfix(tmp_path / "postfix", sasl_path=setup.daemon.address)
    try:
        ok = swaks_auth(postfix.smtp_port, user="alice", password="wonderland")
        assert ok.auth_code == 235, ok.output
        bad = swaks_auth(postfix.smtp_port, user="alice", password="nope", quit_after="AUTH")
        assert bad.auth_code == 535, bad.output
    finally:
        postfix.stop()
