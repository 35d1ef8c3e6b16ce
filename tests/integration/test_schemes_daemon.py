"""Every Dovecot scheme through the whole daemon, next to Dovecot's own auth service.

One passwd-file holds one user per scheme, hashed by ``doveadm pw`` (Dovecot is the oracle for
the stored format) and, for a second user per scheme, by ``saslauth hash``.  Each user logs in
with the right, a wrong, an empty and a non-ASCII password through the real protocol, against
saslauth and against Dovecot on the same file: the replies must be identical.  A few go through
the ``saslauth-test`` CLI as an admin would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import pytest

from tests.fixtures.authclient import AuthClient, plain_b64
from tests.fixtures.pair import Servers, dovecot_and_saslauth
from tests.fixtures.saslauth import REPO
from tests.unit.test_schemes import DOVECOT_SCHEMES

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

RIGHT: Final = "Sesam öffne dich"
PASSWORDS: Final = (RIGHT, "wrong", "", "pässwörd€")
# Dovecot's "doveadm pw" cannot make these two: CRYPT (DES) only uses 8 bytes of a password and
# PLAIN-TRUNC needs a length prefix; both are covered by the unit vectors instead.
SKIPPED_HERE: Final = frozenset({"PLAIN-TRUNC"})


def _user(scheme: str, maker: str) -> str:
    return f"{maker}-{scheme.lower()}@example.org"


def _doveadm(scheme: str, user: str) -> str:
    return subprocess.run(
        ["doveadm", "pw", "-s", scheme, "-u", user, "-p", RIGHT],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()


def _saslauth_hash(scheme: str, user: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run(
        [sys.executable, "-m", "saslauth", "hash", "-s", scheme, "-u", user, "-p", RIGHT],
        capture_output=True, text=True, check=True, timeout=60, env=env,
    ).stdout.strip()


SCHEMES: Final = [s for s in DOVECOT_SCHEMES if s not in SKIPPED_HERE]
_MAKERS: Final = {"dovecot": _doveadm, "saslauth": _saslauth_hash}


def _passwd_text() -> str:
    jobs = [(s, m) for s in SCHEMES for m in ("dovecot", "saslauth")]
    with ThreadPoolExecutor(4) as pool:
        hashes = list(pool.map(lambda job: _MAKERS[job[1]](job[0], _user(*job)), jobs))
    return "".join(f"{_user(*job)}:{stored}\n" for job, stored in zip(jobs, hashes, strict=True))


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with dovecot_and_saslauth(_passwd_text) as both:
        yield both


def _replies(address: str, users: list[str]) -> list[str]:
    with AuthClient.connect(address, timeout=30) as client:
        client.handshake()
        requests = [(u, p) for u in users for p in PASSWORDS]
        client.send_lines(
            f"AUTH\t{i}\tPLAIN\tservice=smtp\tno-penalty\tresp={plain_b64('', u, p)}"
            for i, (u, p) in enumerate(requests, 1)
        )
        return sorted(client.read_replies(len(requests), timeout=60))


@pytest.mark.parametrize("maker", ["dovecot", "saslauth"])
def test_every_scheme_same_replies_as_dovecot(servers: Servers, maker: str) -> None:
    users = [_user(s, maker) for s in SCHEMES]
    theirs = _replies(servers.dovecot, users)
    ours = _replies(servers.saslauth, users)
    assert ours == theirs
    # and the oracle really accepted each right password (the comparison alone could hide a
    # passwd-file both servers failed to read)
    oks = {line.split("\t")[2] for line in ours if line.startswith("OK\t")}
    assert oks == {f"user={u}" for u in users}


@pytest.mark.parametrize("scheme", ["SHA512-CRYPT", "BLF-CRYPT", "ARGON2ID", "SSHA256", "PBKDF2"])
def test_saslauth_test_cli_per_scheme(servers: Servers, scheme: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    user = _user(scheme, "dovecot")

    def run(password: str) -> int:
        return subprocess.run(
            [sys.executable, "-m", "saslauth.testclient", "-c", str(servers.config),
             "-u", user, "-p", password],
            capture_output=True, text=True, timeout=60, env=env, check=False,
        ).returncode

    assert (run(RIGHT), run("wrong")) == (0, 1)
