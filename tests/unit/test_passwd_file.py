from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saslauth import schemes
from saslauth.config import PasswdFileSettings
from saslauth.errors import BackendError, SchemeError
from saslauth.passdb import Lookup, Verdict
from saslauth.passdb.chain import HIDDEN_FIELDS, Chain, _allowed, apply_fields
from saslauth.passdb.passwd_file import Entry, PasswdFile, parse
from saslauth.verifier import VerifyRequest

TEXT = """\
# comment

alice:{PLAIN}secret:1000:1000::/home/alice:/bin/sh
bob:{PLAIN}bobpw::::::nodelay allow_nets=10.0.0.0/8,::1/128 userdb_quota=1G
carol:{PLAIN}pw::::::user=caroline foo=bar
dave:{PLAIN}pw::::::nologin reason=Go\\ away
broken
:nouser
eve:{PLAIN}x:
alice:{PLAIN}second-entry-ignored
"""


def test_parse_format() -> None:
    entries = parse(TEXT, "f")
    assert sorted(entries) == ["alice", "bob", "carol", "dave", "eve"]
    assert entries["alice"].password == "{PLAIN}secret"
    assert entries["alice"].extra == ()
    assert entries["bob"].extra == (("nodelay", None), ("allow_nets", "10.0.0.0/8,::1/128"))
    assert entries["carol"].extra == (("user", "caroline"), ("foo", "bar"))
    assert "secret" not in repr(entries["alice"])


def verify(db: PasswdFile | Chain, user: str, password: bytes, rip: str | None = None) -> Lookup:
    return asyncio.run(db.verify_plain(VerifyRequest(user, password, "smtp", rip)))


@pytest.fixture
def passwd(tmp_path: Path) -> Path:
    path = tmp_path / "users"
    path.write_text(TEXT)
    return path


def db_for(path: Path) -> PasswdFile:
    return PasswdFile(
        PasswdFileSettings(driver="passwd-file", path=str(path)), ThreadPoolExecutor(2)
    )


def test_verdicts(passwd: Path) -> None:
    db = db_for(passwd)
    assert verify(db, "alice", b"secret").verdict is Verdict.OK
    assert verify(db, "alice", b"wrong").verdict is Verdict.PASSWORD_MISMATCH
    assert verify(db, "nobody", b"secret").verdict is Verdict.USER_UNKNOWN


def test_reload_on_change(passwd: Path) -> None:
    db = db_for(passwd)
    assert verify(db, "alice", b"secret").verdict is Verdict.OK
    passwd.write_text("alice:{PLAIN}changed\n")
    os.utime(passwd, ns=(1, 1))  # force a different mtime even within one clock tick
    assert verify(db, "alice", b"secret").verdict is Verdict.PASSWORD_MISMATCH
    assert verify(db, "alice", b"changed").verdict is Verdict.OK


def test_missing_file_is_an_outage_not_unknown(tmp_path: Path) -> None:
    db = db_for(tmp_path / "missing")
    with pytest.raises(BackendError):
        verify(db, "alice", b"secret")
    chain = Chain([db])
    assert verify(chain, "alice", b"secret").verdict is Verdict.INTERNAL_FAILURE


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_an_outage(passwd: Path) -> None:
    passwd.chmod(0)
    with pytest.raises(BackendError):
        verify(db_for(passwd), "alice", b"secret")


def test_extra_fields(passwd: Path) -> None:
    chain = Chain([db_for(passwd)])
    carol = verify(chain, "carol", b"pw")
    assert carol.verdict is Verdict.OK and carol.user == "caroline"
    assert carol.extra == (("foo", "bar"),)
    bob_ok = verify(chain, "bob", b"bobpw", rip="10.1.2.3")
    assert bob_ok.verdict is Verdict.OK and bob_ok.extra == (("nodelay", None),)
    assert verify(chain, "bob", b"bobpw", rip="::1").verdict is Verdict.OK
    refused = verify(chain, "bob", b"bobpw", rip="192.0.2.1")
    assert refused.verdict is Verdict.PASSWORD_MISMATCH and refused.log_reason
    assert verify(chain, "bob", b"bobpw").verdict is Verdict.PASSWORD_MISMATCH  # no rip
    wrong = verify(chain, "bob", b"wrong")  # Dovecot returns no fields with a failure
    assert wrong.verdict is Verdict.PASSWORD_MISMATCH and not wrong.nodelay and wrong.extra == ()
    dave = verify(chain, "dave", b"pw")  # nologin is for the client to enforce, as in Dovecot
    assert dave.verdict is Verdict.OK
    assert dave.extra == (("nologin", None), ("reason", "Go\\"), ("away", None))
    carol_wrong = verify(chain, "carol", b"no")
    assert carol_wrong.user == "caroline"


def test_hidden_fields_leave_one_empty_field() -> None:
    lookup = Lookup(Verdict.OK, extra=(("allow_nets", "10.0.0.0/8"),))
    assert apply_fields(lookup, "10.0.0.1").extra == (("", None),)
    assert apply_fields(Lookup(Verdict.OK), None).extra == ()


def test_allow_nets_local() -> None:
    lookup = Lookup(Verdict.OK, extra=(("allow_nets", "local,192.0.2.0/24"),))
    assert apply_fields(lookup, None).verdict is Verdict.OK
    assert apply_fields(lookup, "192.0.2.9").verdict is Verdict.OK
    denied = apply_fields(lookup, "198.51.100.1")
    assert denied.verdict is Verdict.PASSWORD_MISMATCH


def test_chain_semantics(tmp_path: Path, passwd: Path) -> None:
    other = tmp_path / "other"
    other.write_text("zed:{PLAIN}zpw\nalice:{PLAIN}other-secret\n")
    chain = Chain([db_for(passwd), db_for(other)])
    assert verify(chain, "zed", b"zpw").verdict is Verdict.OK  # unknown in the first goes on
    assert verify(chain, "alice", b"other-secret").verdict is Verdict.OK  # mismatch goes on
    assert verify(chain, "alice", b"nope").verdict is Verdict.PASSWORD_MISMATCH
    assert verify(chain, "ghost", b"x").verdict is Verdict.USER_UNKNOWN
    broken = Chain([db_for(tmp_path / "missing"), db_for(other)])
    assert verify(broken, "zed", b"zpw").verdict is Verdict.OK  # a later success wins
    assert verify(broken, "zed", b"bad").verdict is Verdict.INTERNAL_FAILURE


def test_unknown_scheme_is_an_internal_error_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "users"
    path.write_text("odd:{NOSUCH}c2VjcmV0aGFzaA==\nbob:{PLAIN}bobpw\n")
    db = db_for(path)
    with caplog.at_level(logging.ERROR, logger="saslauth.passdb"):
        first = verify(db, "odd", b"secret")
        second = verify(db, "odd", b"other")
    assert first.verdict is second.verdict is Verdict.INTERNAL_FAILURE
    assert first.log_reason is not None and "NOSUCH" in first.log_reason
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "NOSUCH" in errors[0]
    assert "c2VjcmV0aGFzaA" not in caplog.text and "c2VjcmV0aGFzaA" not in first.log_reason
    assert verify(db, "bob", b"bobpw").verdict is Verdict.OK  # the others are unaffected


# ---- the fast paths against the plain reading of the rules --------------------------------


def reference_apply_fields(lookup: Lookup, request: VerifyRequest) -> Lookup:
    """apply_fields as it was before its fast paths (every step, every time)."""
    extra = dict(lookup.extra)
    user = extra.get("user") or lookup.user
    if lookup.verdict is not Verdict.OK:
        return replace(lookup, user=user, extra=())
    nets = extra.get("allow_nets")
    if nets is not None and not _allowed(nets, request.rip):
        return Lookup(
            Verdict.PASSWORD_MISMATCH,
            user=user,
            backend=lookup.backend,
            log_reason=f"allow_nets check failed for rip {request.rip or 'unknown'}",
        )
    visible = tuple((k, v) for k, v in lookup.extra if k not in HIDDEN_FIELDS)
    if lookup.extra and not visible:
        visible = (("", None),)
    return replace(lookup, user=user, extra=visible)


_FIELD_NAMES = st.sampled_from(["user", "allow_nets", "nodelay", "nologin", "foo", ""])
_FIELD_VALUES = st.sampled_from([None, "", "bob", "10.0.0.0/8", "local", "::1/128,local"])


@settings(max_examples=500, deadline=None)
@given(
    verdict=st.sampled_from(list(Verdict)),
    user=st.sampled_from([None, "", "alice"]),
    extra=st.lists(st.tuples(_FIELD_NAMES, _FIELD_VALUES), max_size=4).map(tuple),
    nodelay=st.booleans(),
    rip=st.sampled_from([None, "10.1.2.3", "::1", "192.0.2.1"]),
)
def test_apply_fields_matches_the_reference(
    verdict: Verdict,
    user: str | None,
    extra: tuple[tuple[str, str | None], ...],
    nodelay: bool,
    rip: str | None,
) -> None:
    lookup = Lookup(verdict, user=user, backend="b", extra=extra, nodelay=nodelay)
    request = VerifyRequest("u", b"pw", "smtp", rip)
    applied = apply_fields(lookup, rip)
    assert applied == reference_apply_fields(lookup, request)
    assert apply_fields(applied, rip) == applied  # what the fast paths rely on


def reference_verify(entries: dict[str, Entry], name: str, req: VerifyRequest) -> Lookup:
    """PasswdFile.verify_plain + apply_fields as they were: schemes.verify and fresh Lookups."""
    entry = entries.get(req.user)
    if entry is None:
        lookup = Lookup(Verdict.USER_UNKNOWN, backend=name)
    elif not entry.password:
        lookup = Lookup(Verdict.PASSWORD_MISMATCH, backend=name, log_reason="empty password")
    else:
        try:
            matched = schemes.verify(req.password, entry.password, user=req.user)
        except SchemeError as exc:
            return Lookup(Verdict.INTERNAL_FAILURE, backend=name, log_reason=str(exc))
        verdict = Verdict.OK if matched else Verdict.PASSWORD_MISMATCH
        lookup = Lookup(verdict, backend=name, extra=entry.extra)
    return reference_apply_fields(lookup, req)


FAST_TEXT = TEXT + """\
empty::::::
trunc:{PLAIN-TRUNC}3-abc::::::user=t
sha:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=::::::nodelay
odd:{PLAIN.nope}x
only:{PLAIN}pw::::::user=o allow_nets=10.0.0.0/8
"""


def test_chain_fast_paths_answer_as_the_reference(tmp_path: Path) -> None:
    """Every user of a file with extra fields, renames, allow_nets and odd schemes, right and
    wrong passwords, from several addresses: the same Lookup as the step-by-step reading."""
    path = tmp_path / "users"
    path.write_text(FAST_TEXT)
    db = db_for(path)
    chain = Chain([db])
    entries = parse(FAST_TEXT, "f")
    users = [*entries, "nobody", ""]
    passwords = [b"secret", b"bobpw", b"pw", b"x", b"abc", b"abcd", b"", b"secret\0", b"wrong"]
    answered: list[bool] = []

    async def scenario() -> None:
        for _ in range(2):  # the second round answers from the remembered accounts
            for user in users:
                for password in passwords:
                    for rip in (None, "10.1.2.3", "::1", "192.0.2.1"):
                        request = VerifyRequest(user, password, "smtp", rip)
                        expected = reference_verify(entries, db.name, request)
                        assert await chain.verify_plain(request) == expected, (user, password)
                        now = chain.answer_now(user, password, rip)  # None: not without waiting
                        assert now is None or now == expected, (user, password)
                        answered.append(now is not None)

    asyncio.run(scenario())
    assert 0 < answered.count(False) < answered.count(True)  # (trunc, sha: other schemes)


def test_unknown_users_run_the_dummy_plain_check(passwd: Path) -> None:
    db = db_for(passwd)
    assert verify(db, "alice", b"secret").verdict is Verdict.OK  # loads the file
    assert db._dummy is not None and db._dummy.plain is not None
    calls: list[bytes] = []
    real = db._dummy.plain

    def counting(password: bytes) -> bool:
        calls.append(password)
        return real(password)

    db._dummy = replace(db._dummy, plain=counting)
    assert verify(db, "nobody", b"guess").verdict is Verdict.USER_UNKNOWN
    assert calls == [b"guess"]


def test_prebuilt_answers_are_shared_and_dropped_on_reload(passwd: Path) -> None:
    db = db_for(passwd)
    first = verify(db, "carol", b"pw")
    assert first == Lookup(Verdict.OK, backend=db.name, extra=parse(TEXT, "f")["carol"].extra)
    assert verify(db, "carol", b"pw") is first  # one frozen Lookup per user and verdict
    assert verify(db, "carol", b"no") == Lookup(
        Verdict.PASSWORD_MISMATCH, backend=db.name, extra=first.extra
    )
    passwd.write_text("carol:{PLAIN}pw::::::foo=new\n")
    os.utime(passwd, ns=(2, 2))
    again = verify(db, "carol", b"pw")
    assert again.extra == (("foo", "new"),) and again is not first
