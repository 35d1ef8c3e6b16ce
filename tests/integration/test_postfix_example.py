"""examples/postfix-main.cf with examples/saslauth-postfix.yaml, on a real Postfix."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.fixtures.ports import public_tmpdir
from tests.fixtures.postfix import Postfix, postfix_skip_reason, swaks_auth, swaks_send
from tests.fixtures.postfix_example import start_example_postfix
from tests.fixtures.saslauth import REPO, Saslauth, running

pytestmark = [pytest.mark.postfix, pytest.mark.root]

DEMO, DEMO_PW = "demo@example.org", "demo"  # the account in examples/users


@dataclass
class Setup:
    postfix: Postfix
    submission: int
    saslauth: Saslauth


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    reason = postfix_skip_reason()
    if reason:
        pytest.skip(reason)
    postfix, port = start_example_postfix(tmp_path_factory.mktemp("postfix"))
    try:
        with public_tmpdir("sapx-") as work:
            shutil.copy(REPO / "examples" / "users", work / "users")
            socket = postfix.queue_dir / "private" / "auth"  # smtpd_sasl_path = private/auth
            text = (REPO / "examples" / "saslauth-postfix.yaml").read_text()
            text = text.replace("/var/spool/postfix/private/auth", str(socket))
            text = text.replace("user: saslauth", "user: nobody")  # no saslauth user here
            text += "\nauth_log: all\n"  # the success lines the tests look for
            config = work / "saslauth.yaml"
            config.write_text(text)
            with running(config, socket) as daemon:
                yield Setup(postfix, port, daemon)
    finally:
        postfix.stop()


def test_submission_starttls_auth_and_relay(setup: Setup) -> None:
    result = swaks_auth(
        setup.submission, user=DEMO, password=DEMO_PW, tls=True, from_addr=DEMO,
    )  # fmt: skip
    assert result.auth_code == 235 and result.rcpt_code == 250, result.output
    assert result.data_code == 250, result.output
    setup.saslauth.wait_log(f"result=ok user={DEMO} mech=PLAIN service=smtp")
    assert "secured=yes" in setup.saslauth.log_text()


def test_no_auth_before_starttls(setup: Setup) -> None:
    result = swaks_auth(setup.submission, user=DEMO, password=DEMO_PW, tls=False, from_addr=DEMO)
    assert result.auth_code != 235 and "AUTH" not in _ehlo(result.output), result.output


def test_relaying_without_auth_is_refused(setup: Setup) -> None:
    submission = swaks_send(setup.submission, from_addr=DEMO, tls=True)
    assert submission.rcpt_code is not None and submission.rcpt_code >= 500, submission.output
    port25 = swaks_send(setup.postfix.smtp_port, from_addr=DEMO)
    assert port25.rcpt_code == 554 and "Relay access denied" in (port25.rcpt_reply or "")


def test_sender_not_owned_by_the_login_is_refused(setup: Setup) -> None:
    result = swaks_auth(
        setup.submission, user=DEMO, password=DEMO_PW, tls=True, from_addr="boss@example.org",
    )  # fmt: skip
    assert result.auth_code == 235, result.output
    assert result.rcpt_code == 553 and "not owned by user" in (result.rcpt_reply or ""), (
        result.output
    )


def _ehlo(output: str) -> str:
    """The server's EHLO answer before STARTTLS (swaks lines starting with '<-  250')."""
    return "\n".join(line for line in output.splitlines() if line.startswith("<-  250"))
