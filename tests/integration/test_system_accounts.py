"""shadow and pam drivers end to end: real throwaway system accounts, a real PAM stack
(pam_unix), the real daemon (front as ``nobody``, verifier as root), saslauth-test and a
real Postfix with swaks.  The last test runs a second daemon whose verifier is a throwaway user
in group ``shadow``; it skips when the interpreter's packages are unreadable to other users
(pyenv under /root), because the verifier imports its drivers after dropping privileges.

One daemon serves both drivers in a chain: bare names are checked by ``shadow`` (then
``pam``), ``NAME@pam.test`` only by ``pam`` (shadow refuses names with a domain).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.authclient import AuthClient, plain_b64
from tests.fixtures.ports import public_tmpdir
from tests.fixtures.postfix import postfix_skip_reason, start_postfix, swaks_auth
from tests.fixtures.saslauth import REPO, Saslauth, running
from tests.fixtures.sysusers import (
    SystemAccounts,
    can_read_as,
    shadow_line,
    system_accounts,
    system_skip_reason,
)

pytestmark = [pytest.mark.root, pytest.mark.slow]

PAM_STACK = "auth required pam_unix.so\naccount required pam_unix.so\n"  # 2 s fail delay


@dataclass
class Setup:
    accounts: SystemAccounts
    daemon: Saslauth
    work: Path


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    reason = system_skip_reason()
    if reason:
        pytest.skip(reason)
    with system_accounts() as make, public_tmpdir() as work:
        make.add("yes")  # chpasswd's default on Debian 12: yescrypt
        make.add("sha", method="SHA512")
        make.add("lock")
        subprocess.run(["usermod", "-L", make.accounts["lock"].name], check=True)
        make.add("exp")
        subprocess.run(["chage", "-E", "0", make.accounts["exp"].name], check=True)
        make.add("low", system=True)  # uid below min_uid 1000
        service = make.pam_service(PAM_STACK)
        config = work / "saslauth.yaml"
        config.write_text(
            "user: nobody\n"
            "failure_delay: 0\n"
            "auth_log: all\n"
            f'listen:\n  - path: {work / "auth"}\n    mode: "0666"\n'
            "passdb:\n"
            "  - driver: shadow\n"
            "  - driver: pam\n"
            f"    service: {service}\n"
            "    allowed_domains: [pam.test]\n"
            "    threads: 8\n"
        )
        with running(config, work / "auth") as daemon:
            yield Setup(make.accounts, daemon, work)


def saslauth_test(setup: Setup, user: str, password: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.Popen(
        [sys.executable, "-m", "saslauth.testclient", "-s", str(setup.work / "auth"),
         "-u", user, "-p", password],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def results(procs: dict[str, subprocess.Popen[str]]) -> dict[str, tuple[int, str]]:
    """Run many saslauth-test logins at once (failures through PAM take 2 s each)."""
    out = {}
    for key, proc in procs.items():
        stdout, _ = proc.communicate(timeout=60)
        out[key] = (proc.returncode, stdout.strip())
    return out


def test_hash_types_written_by_chpasswd(setup: Setup) -> None:
    assert shadow_line(setup.accounts["yes"].name).split(":")[1].startswith("$y$")
    assert shadow_line(setup.accounts["sha"].name).split(":")[1].startswith("$6$")
    assert shadow_line(setup.accounts["lock"].name).split(":")[1].startswith("!")


def test_logins_through_shadow_and_pam(setup: Setup) -> None:
    a = setup.accounts
    procs = {
        "shadow-yes": saslauth_test(setup, a["yes"].name, a["yes"].password),
        "shadow-sha": saslauth_test(setup, a["sha"].name, a["sha"].password),
        "pam-yes": saslauth_test(setup, f"{a['yes'].name}@pam.test", a["yes"].password),
        "pam-sha": saslauth_test(setup, f"{a['sha'].name}@pam.test", a["sha"].password),
        "wrong": saslauth_test(setup, a["yes"].name, "wrong"),
        "pam-wrong": saslauth_test(setup, f"{a['yes'].name}@pam.test", "wrong"),
        "unknown": saslauth_test(setup, f"{setup.accounts.prefix}none", "wrong"),
        "other-domain": saslauth_test(setup, f"{a['yes'].name}@else.test", a["yes"].password),
    }
    for role in ("lock", "exp", "low"):  # the right password, refused by both drivers
        procs[role] = saslauth_test(setup, a[role].name, a[role].password)
        procs[f"pam-{role}"] = saslauth_test(setup, f"{a[role].name}@pam.test", a[role].password)
    got = results(procs)
    for key in ("shadow-yes", "shadow-sha", "pam-yes", "pam-sha"):
        assert got[key][0] == 0 and got[key][1].startswith("OK user="), (key, got[key])
    for key, (code, line) in got.items():
        if key not in ("shadow-yes", "shadow-sha", "pam-yes", "pam-sha"):
            assert code == 1 and line.startswith("FAIL user=") and "reason" not in line, key
    log = setup.daemon.log_text()
    yes = a["yes"].name
    assert f"result=ok user={yes} " in log and "backend=shadow" in log
    assert f"result=ok user={yes}@pam.test " in log and f"backend=pam:{setup.accounts.pam_service}"
    for role, reason in (
        ("lock", "account locked"),
        ("exp", "account expired"),
        ("low", "below min_uid 1000"),
    ):
        line = next(x for x in log.splitlines() if f"user={a[role].name} " in x)
        assert reason in line and a[role].password not in line, line
    pam_exp = next(x for x in log.splitlines() if f"user={a['exp'].name}@pam.test " in x)
    assert "verdict=disabled" in pam_exp and "acct_mgmt" in pam_exp  # pam_unix's account stage
    for account in a.accounts.values():
        assert account.password not in log


def test_slow_pam_failure_does_not_delay_a_concurrent_success(setup: Setup) -> None:
    a = setup.accounts
    user = f"{a['yes'].name}@pam.test"
    timings: dict[str, tuple[str, float]] = {}

    def login(key: str, password: str, wait: float) -> None:
        time.sleep(wait)
        with AuthClient.connect(setup.daemon.address) as client:
            client.handshake()
            started = time.monotonic()
            reply = client.auth(
                f"AUTH\t1\tPLAIN\tservice=smtp\tresp={plain_b64('', user, password)}", 15
            )
            timings[key] = (reply or "", time.monotonic() - started)

    threads = [
        threading.Thread(target=login, args=("bad", "wrong", 0.0)),
        threading.Thread(target=login, args=("good", a["yes"].password, 0.2)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert timings["good"][0].startswith("OK\t1"), timings
    assert timings["bad"][0].startswith("FAIL\t1"), timings
    assert timings["good"][1] < 1.0, timings  # while the failure waits out its delay
    assert timings["bad"][1] > 1.0, timings  # pam_unix's own delay (failure_delay is 0)


def test_front_cannot_read_shadow_but_verifier_can(setup: Setup) -> None:
    children = setup.daemon.wait_children()
    front_ok, front_error = can_read_as(children["front"], "/etc/shadow")
    verifier_ok, verifier_error = can_read_as(children["verifier"], "/etc/shadow")
    assert not front_ok and "Permission denied" in front_error
    assert verifier_ok, verifier_error
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{children['front']}/status").read_text()
        .splitlines()
    )
    assert status["Uid"].split() == ["65534"] * 4 and status["Groups"].split() == []  # nobody


def test_postfix_235_and_535(setup: Setup, tmp_path_factory: pytest.TempPathFactory) -> None:
    reason = postfix_skip_reason()
    if reason:
        pytest.skip(reason)
    a = setup.accounts
    postfix = start_postfix(tmp_path_factory.mktemp("pfx"), sasl_path=str(setup.work / "auth"))
    try:
        port = postfix.smtp_port
        shadow = swaks_auth(port, user=a["sha"].name, password=a["sha"].password)
        assert shadow.auth_code == 235 and shadow.rcpt_code == 250, shadow.output
        pam = swaks_auth(
            port, user=f"{a['yes'].name}@pam.test", password=a["yes"].password, mech="LOGIN"
        )
        assert pam.auth_code == 235, pam.output
        locked = swaks_auth(port, user=a["lock"].name, password=a["lock"].password)
        low = swaks_auth(port, user=a["low"].name, password=a["low"].password)
        assert locked.auth_code == low.auth_code == 535
        assert locked.auth_reply == low.auth_reply  # nothing says why
    finally:
        postfix.stop()


def test_verifier_as_user_in_group_shadow(setup: Setup) -> None:
    """The non-root deployment: ``verifier.user`` in group ``shadow`` runs both drivers."""
    a = setup.accounts
    with system_accounts() as make, public_tmpdir() as work:
        verifier = make.add("vrf", system=True, groups=("shadow",))
        # No skip when this Python lives where the verifier user cannot read it (pyenv under
        # /root, as here): the master imports the drivers before the verifier drops to it.
        config = work / "saslauth.yaml"
        config.write_text(
            f"user: nobody\nfailure_delay: 0\nverifier:\n  user: {verifier.name}\n"
            f'listen:\n  - path: {work / "auth"}\n    mode: "0666"\npassdb:\n'
            f"  - driver: shadow\n  - driver: pam\n    service: {a.pam_service}\n"
            "    allowed_domains: [pam.test]\n"
        )
        with running(config, work / "auth") as daemon:
            pid = daemon.wait_children()["verifier"]
            assert f"\nUid:\t{verifier.uid}\t" in Path(f"/proc/{pid}/status").read_text()
            assert can_read_as(pid, "/etc/shadow")[0]
            for user in (a["yes"].name, f"{a['yes'].name}@pam.test"):
                with AuthClient.connect(daemon.address) as client:
                    client.handshake()
                    resp = plain_b64("", user, a["yes"].password)
                    reply = client.auth(f"AUTH\t1\tPLAIN\tservice=smtp\tresp={resp}", 10)
                    assert reply == f"OK\t1\tuser={user}", (reply, daemon.log_text())
