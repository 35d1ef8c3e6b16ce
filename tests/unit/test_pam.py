"""The PAM driver against the real libpam, with a private PAM config dir (pam_start_confdir).

No root needed: the stacks use pam_exec (the password reaches a script through the
conversation, ``expose_authtok``), pam_faildelay, pam_deny and pam_permit.
"""

from __future__ import annotations

import asyncio
import ctypes
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from saslauth.config import PamSettings
from saslauth.errors import BackendTimeout
from saslauth.passdb import Lookup, Verdict
from saslauth.passdb import libpam as P
from saslauth.passdb.pam import DUMMY_USER, Pam, verdict_of
from saslauth.verifier import VerifyRequest

MODULES = Path("/lib/x86_64-linux-gnu/security")
PASSWORD = "Pässwörd 1".encode()

pytestmark = pytest.mark.skipif(
    P.load() is not None or P._lib is None or P._lib.start_confdir is None
    or not (MODULES / "pam_exec.so").exists(),
    reason="needs libpam >= 1.4 (pam_start_confdir) and pam_exec.so (Debian libpam-modules)",
)

CHECK = """\
#!/bin/sh
pw=$(cat)
printf 'user=%s rhost=%s pw=%s\\n' "$PAM_USER" "$PAM_RHOST" "$pw" >> {log}
[ "$pw" = "{good}" ] || exit 1
[ "$PAM_USER" = slow ] && sleep 3
exit 0
"""


@dataclass
class Stack:
    confdir: Path
    log: Path

    def seen(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    log = tmp_path / "seen.log"
    script = tmp_path / "check"
    script.write_text(CHECK.format(log=log, good=PASSWORD.decode()))
    script.chmod(0o755)
    auth = (
        "auth required pam_faildelay.so delay=2000000\n"
        f"auth [success=done default=ignore] pam_exec.so expose_authtok quiet {script}\n"
        "auth requisite pam_deny.so\n"
    )
    (tmp_path / "good").write_text(auth + "account required pam_permit.so\n")
    (tmp_path / "fast").write_text(auth.split("\n", 1)[1] + "account required pam_permit.so\n")
    (tmp_path / "noacct").write_text(auth + "account required pam_deny.so\n")
    (tmp_path / "broken").write_text("auth required pam_no_such_module.so\n")
    return Stack(tmp_path, log)


def make(stack: Stack, service: str = "fast", **options: Any) -> Pam:
    options.setdefault("min_uid", None)  # the test names are not in NSS
    settings = PamSettings(driver="pam", service=service, **options)
    return Pam(settings, ThreadPoolExecutor(1), confdir=str(stack.confdir))


async def _verify(db: Pam, user: str, password: bytes, rip: str | None) -> Lookup:
    return await db.verify_plain(VerifyRequest(user, password, "smtp", rip))


def check(db: Pam, user: str, password: bytes, rip: str | None = "192.0.2.7") -> Lookup:
    return asyncio.run(_verify(db, user, password, rip))


def test_password_goes_through_the_conversation_with_rhost(stack: Stack) -> None:
    db = make(stack)
    ok = check(db, "alice", PASSWORD)
    assert ok.verdict is Verdict.OK and ok.backend == "pam:fast" and ok.log_reason is None
    assert f"user=alice rhost=192.0.2.7 pw={PASSWORD.decode()}" in stack.seen()
    bad = check(db, "alice", b"wrong", rip=None)
    assert bad.verdict is Verdict.PASSWORD_MISMATCH
    assert bad.log_reason == "authenticate: Authentication failure"
    assert "user=alice rhost= pw=wrong" in stack.seen()


def test_nul_in_password_never_matches_the_part_before_it(stack: Stack) -> None:
    lookup = check(make(stack), "alice", PASSWORD + b"\0junk")
    assert lookup.verdict is Verdict.PASSWORD_MISMATCH
    assert "user=alice " not in stack.seen()  # the real account was not even tried


def test_account_stage_and_outages(stack: Stack) -> None:
    refused = check(make(stack, "noacct"), "alice", PASSWORD)
    assert refused.verdict is Verdict.USER_DISABLED
    assert refused.log_reason is not None and refused.log_reason.startswith("acct_mgmt:")
    broken = check(make(stack, "broken"), "alice", PASSWORD)
    assert broken.verdict is Verdict.INTERNAL_FAILURE  # a missing module: temporary
    missing = check(make(stack, "no-such-service"), "alice", PASSWORD)
    assert missing.verdict is Verdict.INTERNAL_FAILURE


def test_names_and_policy(stack: Stack) -> None:
    domain = check(make(stack), "alice@example.org", PASSWORD)
    assert domain.verdict is Verdict.USER_UNKNOWN and "domain" in (domain.log_reason or "")
    stripped = check(make(stack, strip_domain=True), "alice@example.org", PASSWORD)
    assert stripped.verdict is Verdict.OK
    # root is uid 0: refused by the default min_uid, and root's password is never tried.
    root = check(make(stack, min_uid=1000), "root", PASSWORD)
    assert root.verdict is Verdict.USER_DISABLED
    assert root.log_reason == "uid 0 below min_uid 1000"
    assert "user=root" not in stack.seen() and f"user={DUMMY_USER}" in stack.seen()
    ghost = check(make(stack, min_uid=1000), "alice", PASSWORD)  # not in NSS
    assert ghost.verdict is Verdict.USER_DISABLED
    assert check(make(stack, min_uid=0, deny_groups=("root",)), "root", PASSWORD).verdict is (
        Verdict.USER_DISABLED
    )
    assert check(make(stack, min_uid=0), "root", PASSWORD).verdict is Verdict.OK


def test_failure_delay_is_returned_not_slept(stack: Stack) -> None:
    started = time.monotonic()
    outcome = P.authenticate("good", "alice", b"wrong", confdir=str(stack.confdir))
    assert outcome.code == P.AUTH_ERR and time.monotonic() - started < 1.0
    assert 1.0 < outcome.delay < 3.0  # pam_faildelay's 2 s, randomised by libpam
    success = P.authenticate("good", "alice", PASSWORD, confdir=str(stack.confdir))
    assert success.ok and success.delay == 0.0


def test_slow_failure_does_not_delay_a_concurrent_success(stack: Stack) -> None:
    db = make(stack, "good", threads=1)  # the failure's 2 s do not even hold the one thread

    async def timed(user: str, password: bytes) -> tuple[Verdict, float]:
        started = time.monotonic()
        lookup = await _verify(db, user, password, None)
        return lookup.verdict, time.monotonic() - started

    async def both() -> list[tuple[Verdict, float]]:
        failing = asyncio.ensure_future(timed("alice", b"wrong"))
        await asyncio.sleep(0.05)  # the failure is already sleeping in its PAM thread
        good = await timed("bob", PASSWORD)
        return [good, await failing]

    (good, good_time), (bad, bad_time) = asyncio.run(both())
    assert good is Verdict.OK and bad is Verdict.PASSWORD_MISMATCH
    assert good_time < 1.0, good_time
    assert bad_time > 1.0, bad_time  # pam_faildelay's 2 s (libpam randomises it a little)


def test_timeout_is_a_temporary_failure(stack: Stack) -> None:
    with pytest.raises(BackendTimeout, match=r"did not answer in 0\.5s"):
        check(make(stack, timeout="500ms"), "slow", PASSWORD)


@pytest.mark.parametrize(
    ("code", "stage", "verdict"),
    [
        (P.SUCCESS, "acct_mgmt", Verdict.OK),
        (P.AUTH_ERR, "authenticate", Verdict.PASSWORD_MISMATCH),
        (P.CONV_ERR, "authenticate", Verdict.PASSWORD_MISMATCH),
        (P.MAXTRIES, "authenticate", Verdict.PASSWORD_MISMATCH),
        (P.USER_UNKNOWN, "authenticate", Verdict.USER_UNKNOWN),
        (P.AUTH_ERR, "acct_mgmt", Verdict.USER_DISABLED),
        (P.PERM_DENIED, "acct_mgmt", Verdict.USER_DISABLED),
        (P.ACCT_EXPIRED, "acct_mgmt", Verdict.USER_DISABLED),
        (P.AUTHTOK_EXPIRED, "acct_mgmt", Verdict.USER_DISABLED),
        (P.NEW_AUTHTOK_REQD, "acct_mgmt", Verdict.PASS_EXPIRED),
        (P.SYSTEM_ERR, "authenticate", Verdict.INTERNAL_FAILURE),
        (P.BUF_ERR, "authenticate", Verdict.INTERNAL_FAILURE),
        (P.AUTHINFO_UNAVAIL, "authenticate", Verdict.INTERNAL_FAILURE),
        (P.ABORT, "start", Verdict.INTERNAL_FAILURE),
        (P.SERVICE_ERR, "acct_mgmt", Verdict.INTERNAL_FAILURE),
        (P.TRY_AGAIN, "authenticate", Verdict.INTERNAL_FAILURE),
    ],
)
def test_verdicts(code: int, stage: str, verdict: Verdict) -> None:
    assert verdict_of(P.Outcome(code, stage, "")) is verdict


def _messages(*items: tuple[int, bytes]) -> Any:
    structs = [P.PamMessage(style, text) for style, text in items]
    array = (ctypes.POINTER(P.PamMessage) * len(structs))(*(ctypes.pointer(m) for m in structs))
    return array, structs  # keep the structs alive


def test_conversation_answers_prompts_and_refuses_unknown_styles() -> None:
    lib = P.library()
    said: list[str] = []
    converse = P.conversation(lib, PASSWORD, b"alice", said)
    messages, _keep = _messages(
        (P.PROMPT_ECHO_OFF, b"Password: "), (P.TEXT_INFO, b"hello"), (P.PROMPT_ECHO_ON, b"login:")
    )
    out = (ctypes.POINTER(P.PamResponse) * 1)()
    assert converse(3, messages, out, None) == P.SUCCESS
    replies = out[0]
    assert ctypes.string_at(replies[0].resp) == PASSWORD
    assert not replies[1].resp and ctypes.string_at(replies[2].resp) == b"alice"
    assert said == ["hello"]
    for i in (0, 2):
        lib.free(replies[i].resp)
    lib.free(ctypes.cast(replies, ctypes.c_void_p))
    odd, _keep2 = _messages((P.PROMPT_ECHO_OFF, b"Password: "), (99, b"binary?"))
    assert converse(2, odd, out, None) == P.CONV_ERR  # and frees what it had allocated
    assert said[-1] == "unsupported PAM prompt style 99"
    assert converse(1, None, out, None) == P.CONV_ERR  # an exception never reaches C
