"""The shadow driver on temp copies of /etc/passwd, /etc/shadow and /etc/group."""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from saslauth import schemes
from saslauth.config import ShadowSettings
from saslauth.errors import BackendError
from saslauth.passdb import Lookup, Verdict
from saslauth.passdb.shadow import Shadow
from saslauth.passdb.system import policy_refusal, system_name
from saslauth.passdb.unixfiles import (
    Ageing,
    ShadowEntry,
    check_ageing,
    parse_group,
    parse_passwd,
    parse_shadow,
)
from saslauth.schemes import libcrypt
from saslauth.verifier import VerifyRequest

TODAY = int(time.time() // 86400)
YESCRYPT = libcrypt.crypt(b"yes-pw", b"$y$j9T$abcdefghijklmnop$")
assert YESCRYPT is not None
YES = YESCRYPT.decode()
SHA512 = schemes.generate("SHA512-CRYPT", b"sha-pw").removeprefix("{SHA512-CRYPT}")
MD5 = libcrypt.crypt(b"md5-pw", b"$1$saltsalt$")
assert MD5 is not None

PASSWD = """\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/bash
bob:x:1001:1001::/home/bob:/bin/sh
carol:x:1002:100::/home/carol:/bin/sh
locked:x:1003:100::/:/bin/sh
star:x:1004:100::/:/bin/sh
empty:x:1005:100::/:/bin/sh
expired:x:1006:100::/:/bin/sh
mustchange:x:1007:100::/:/bin/sh
old:x:1008:100::/:/bin/sh
inactive:x:1009:100::/:/bin/sh
noshadow:x:1010:100::/:/bin/sh
unshadowed:{md5}:1011:100::/:/bin/sh
garbage:x:1012:100::/:/bin/sh
big:x:70000:100::/:/bin/sh
broken line
""".replace("{md5}", MD5.decode())

SHADOW = f"""\
root:{SHA512}:19000:0:99999:7:::
daemon:*:19000:0:99999:7:::
alice:{YES}:{TODAY - 1}:0:99999:7:::
bob:{SHA512}:{TODAY - 1}:0:99999:7:::
carol:{YES}:{TODAY - 1}::::::
locked:!{YES}:{TODAY - 1}:0:99999:7:::
star:*:{TODAY - 1}:0:99999:7:::
empty::{TODAY - 1}:0:99999:7:::
expired:{YES}:{TODAY - 1}:0:99999:7::{TODAY - 1}:
mustchange:{YES}:0:0:99999:7:::
old:{YES}:{TODAY - 100}:0:30:7:::
inactive:{YES}:{TODAY - 100}:0:30:7:10::
garbage:$9$unknown-method:{TODAY - 1}::::::
big:{YES}:{TODAY - 1}::::::
short:line
"""

GROUP = """\
root:x:0:
users:x:100:carol
alice:x:1000:
bob:x:1001:
mail:x:8:bob
nosmtp:x:2000:carol
"""


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {}
    for name, text in (("passwd", PASSWD), ("shadow", SHADOW), ("group", GROUP)):
        path = tmp_path / name
        path.write_text(text)
        paths[name] = path
    return paths


def make(files: dict[str, Path], **options: Any) -> Shadow:
    settings = ShadowSettings(
        driver="shadow",
        shadow_file=str(files["shadow"]),
        passwd_file=str(files["passwd"]),
        group_file=str(files["group"]),
        **options,
    )
    return Shadow(settings, ThreadPoolExecutor(2))


def check(db: Shadow, user: str, password: bytes) -> Lookup:
    return asyncio.run(db.verify_plain(VerifyRequest(user, password, "smtp", "192.0.2.1")))


def test_parsers_skip_malformed_lines_and_keep_first_entry() -> None:
    passwd = parse_passwd(PASSWD + "alice:x:5:5::/:/bin/sh\nbad:x:notanumber:1::/:/bin/sh\n")
    assert passwd["alice"].uid == 1000 and "bad" not in passwd and "broken line" not in passwd
    shadow = parse_shadow(SHADOW + "nums:x:abc::::::\n")
    assert "short" not in shadow and "nums" not in shadow
    assert shadow["carol"] == ShadowEntry("carol", YES, TODAY - 1, -1, -1, -1, -1, -1)
    assert shadow["expired"].expire == TODAY - 1 and shadow["inactive"].inactive_days == 10
    assert YES not in repr(shadow["alice"])  # hashes never reach reprs (or logs)
    groups = parse_group(GROUP)
    assert groups.of("carol", 100) == {"users", "nosmtp"}
    assert groups.of("bob", 1001) == {"bob", "mail"}
    assert groups.of("ghost", 4242) == frozenset()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, Ageing.OK),  # no ageing at all
        ({"last_change": TODAY - 1, "max_days": 99999}, Ageing.OK),
        ({"last_change": 0}, Ageing.CHANGE_REQUIRED),
        ({"last_change": TODAY - 30, "max_days": 30}, Ageing.PASSWORD_EXPIRED),
        ({"last_change": TODAY - 29, "max_days": 30}, Ageing.OK),
        ({"last_change": TODAY - 40, "max_days": 30, "inactive_days": 10}, Ageing.INACTIVE),
        ({"last_change": TODAY - 39, "max_days": 30, "inactive_days": 10},
         Ageing.PASSWORD_EXPIRED),
        ({"last_change": TODAY + 5, "max_days": 1}, Ageing.OK),  # changed "in the future"
        ({"expire": TODAY}, Ageing.ACCOUNT_EXPIRED),
        ({"expire": TODAY + 1}, Ageing.OK),
        ({"expire": TODAY, "last_change": 0}, Ageing.ACCOUNT_EXPIRED),  # expiry wins
    ],
)
def test_ageing_follows_pam_unix(fields: dict[str, int], expected: Ageing) -> None:
    assert check_ageing(ShadowEntry("u", "x", **fields), TODAY) is expected


@pytest.mark.parametrize(
    ("user", "options", "expected"),
    [
        ("alice", {}, "alice"),
        ("alice@example.org", {}, None),
        ("alice@example.org", {"strip_domain": True}, "alice"),
        ("alice@Example.ORG", {"allowed_domains": ("example.org",)}, "alice"),
        ("alice@other.org", {"allowed_domains": ("example.org",)}, None),
        ("a@b@example.org", {"strip_domain": True}, None),
        ("@example.org", {"strip_domain": True}, None),
        ("-rf", {}, None),
        ("a:b", {}, None),
        ("a b", {}, None),
    ],
)
def test_system_name(user: str, options: dict[str, Any], expected: str | None) -> None:
    settings = ShadowSettings(driver="shadow", **options)
    name, reason = system_name(user, settings)
    assert name == expected
    assert (reason is None) == (expected is not None)


def test_policy() -> None:
    default = ShadowSettings(driver="shadow")
    assert policy_refusal(0, (), default) == "uid 0 below min_uid 1000"
    assert policy_refusal(1000, (), default) is None
    assert policy_refusal(0, (), ShadowSettings(driver="shadow", min_uid=None)) is None
    capped = ShadowSettings(driver="shadow", max_uid=60000)
    assert policy_refusal(60001, (), capped) == "uid 60001 above max_uid 60000"
    groups = ShadowSettings(driver="shadow", allow_groups=("mail",), deny_groups=("nosmtp",))
    assert policy_refusal(1000, {"mail"}, groups) is None
    assert policy_refusal(1000, {"users"}, groups) == "in none of allow_groups"
    assert policy_refusal(1000, {"mail", "nosmtp"}, groups) == "in deny_groups (nosmtp)"


def test_hash_types(files: dict[str, Path]) -> None:
    db = make(files)
    assert check(db, "alice", b"yes-pw").verdict is Verdict.OK  # yescrypt
    assert check(db, "bob", b"sha-pw").verdict is Verdict.OK  # SHA512-CRYPT
    assert check(db, "unshadowed", b"md5-pw").verdict is Verdict.OK  # hash in /etc/passwd
    assert check(db, "alice", b"sha-pw").verdict is Verdict.PASSWORD_MISMATCH
    assert check(db, "bob", b"yes-pw").verdict is Verdict.PASSWORD_MISMATCH
    assert check(db, "alice", b"yes-pw\0").verdict is Verdict.PASSWORD_MISMATCH


@pytest.mark.parametrize(
    ("user", "password", "verdict", "reason"),
    [
        ("nosuch", b"yes-pw", Verdict.USER_UNKNOWN, "no such account"),
        ("noshadow", b"yes-pw", Verdict.USER_UNKNOWN, "no shadow entry"),
        ("locked", b"yes-pw", Verdict.USER_DISABLED, "account locked"),
        ("star", b"yes-pw", Verdict.USER_DISABLED, "account locked"),
        ("empty", b"", Verdict.PASSWORD_MISMATCH, "empty password"),
        ("expired", b"yes-pw", Verdict.USER_DISABLED, "account expired"),
        ("mustchange", b"yes-pw", Verdict.PASS_EXPIRED, "password change required"),
        ("old", b"yes-pw", Verdict.PASS_EXPIRED, "password expired"),
        ("inactive", b"yes-pw", Verdict.USER_DISABLED, "password expired and account inactive"),
        ("root", b"sha-pw", Verdict.USER_DISABLED, "uid 0 below min_uid 1000"),
        ("daemon", b"x", Verdict.USER_DISABLED, "uid 1 below min_uid 1000"),
        ("alice@example.org", b"yes-pw", Verdict.USER_UNKNOWN, "name has a domain"),
        ("garbage", b"x", Verdict.SCHEME_NOT_AVAILABLE, "unsupported hash method $9$"),
    ],
)
def test_refusals(
    files: dict[str, Path], user: str, password: bytes, verdict: Verdict, reason: str | None
) -> None:
    lookup = check(make(files), user, password)
    assert lookup.verdict is verdict
    if reason is not None:
        assert lookup.log_reason is not None and lookup.log_reason.startswith(reason)
    assert lookup.extra == () and lookup.backend == "shadow"


def test_wrong_password_on_expired_account_is_a_mismatch(files: dict[str, Path]) -> None:
    # Ageing is only looked at after the right password, so it tells nothing to a guesser.
    assert check(make(files), "expired", b"nope").verdict is Verdict.PASSWORD_MISMATCH


def test_options(files: dict[str, Path]) -> None:
    assert check(make(files, min_uid=0), "root", b"sha-pw").verdict is Verdict.OK
    assert check(make(files, max_uid=60000), "big", b"yes-pw").verdict is Verdict.USER_DISABLED
    assert check(make(files), "big", b"yes-pw").verdict is Verdict.OK
    mail_only = make(files, allow_groups=("mail",))
    assert check(mail_only, "bob", b"sha-pw").verdict is Verdict.OK  # supplementary group
    assert check(mail_only, "alice", b"yes-pw").verdict is Verdict.USER_DISABLED
    deny = make(files, deny_groups=("nosmtp",))
    assert check(deny, "carol", b"yes-pw").verdict is Verdict.USER_DISABLED
    assert check(deny, "alice", b"yes-pw").verdict is Verdict.OK
    primary = make(files, deny_groups=("alice",))  # the primary group counts too
    assert check(primary, "alice", b"yes-pw").verdict is Verdict.USER_DISABLED
    domains = make(files, allowed_domains=("example.org",))
    assert check(domains, "alice@example.org", b"yes-pw").verdict is Verdict.OK
    assert check(domains, "alice@other.org", b"yes-pw").verdict is Verdict.USER_UNKNOWN


def test_refused_accounts_cost_a_hash_check(files: dict[str, Path]) -> None:
    db = make(files)
    started = time.perf_counter()
    for _ in range(5):
        check(db, "alice", b"wrong")
    wrong = time.perf_counter() - started
    for user in ("nosuch", "locked", "root"):
        started = time.perf_counter()
        for _ in range(5):
            check(db, user, b"wrong")
        # A dummy check against a real hash: not "instant" (yescrypt takes ~25 ms).
        assert time.perf_counter() - started > wrong / 4, user


def test_reloads_when_the_file_changes_and_outage_is_backend_error(
    files: dict[str, Path],
) -> None:
    db = make(files)
    assert check(db, "alice", b"yes-pw").verdict is Verdict.OK
    text = files["shadow"].read_text().replace(f"alice:{YES}", f"alice:{SHA512}")
    new = files["shadow"].with_suffix(".new")
    new.write_text(text)
    os.replace(new, files["shadow"])  # how shadow tools write it: a rename
    assert check(db, "alice", b"sha-pw").verdict is Verdict.OK
    files["shadow"].unlink()
    with pytest.raises(BackendError, match="cannot read"):
        check(db, "alice", b"sha-pw")
    files["shadow"].write_text(SHADOW)
    assert check(db, "alice", b"yes-pw").verdict is Verdict.OK  # recovers, no restart


def test_hash_problem_never_quotes_what_could_be_a_password() -> None:
    from saslauth.passdb.shadow import hash_problem

    assert hash_problem("$9$abc") == "unsupported hash method $9$"
    assert hash_problem("$Secret-Pw1$x") == "not a crypt(3) hash"
    assert hash_problem("$longsecretpassword") == "not a crypt(3) hash"
    assert hash_problem("plaintext") == "not a crypt(3) hash"
