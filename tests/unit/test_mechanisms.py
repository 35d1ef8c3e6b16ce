"""PLAIN and LOGIN as pure generators: driven by hand, no event loop, no sockets."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saslauth import mechanisms as mech
from saslauth import usernames
from saslauth.events import AuthRequest
from saslauth.mechanisms.login import Login
from saslauth.mechanisms.plain import Plain
from saslauth.passdb import Lookup, Verdict
from saslauth.usernames import Identity, UsernamePolicy

POLICY = UsernamePolicy()
USERS = {"alice": b"secret"}


def run(
    mechanism: mech.Mechanism, initial: bytes | None, answers: list[bytes]
) -> tuple[list[bytes], list[mech.VerifyPlain], mech.Outcome]:
    """Drive an exchange; return the challenges sent, the verify effects and the outcome."""
    gen = mechanism.exchange(AuthRequest(1, mechanism.name, "smtp", initial))
    challenges: list[bytes] = []
    verifies: list[mech.VerifyPlain] = []
    reply: mech.Reply | None = None
    try:
        while True:
            effect = gen.send(reply)  # type: ignore[arg-type]
            if isinstance(effect, mech.Challenge):
                challenges.append(effect.data)
                reply = mech.ClientResponse(answers.pop(0))
            else:
                verifies.append(effect)
                ok = USERS.get(effect.identity.user) == effect.password
                reply = Lookup(Verdict.OK if ok else Verdict.PASSWORD_MISMATCH)
    except StopIteration as stop:
        return challenges, verifies, stop.value


def test_plain_initial_response() -> None:
    challenges, verifies, outcome = run(Plain(POLICY), b"\0alice\0secret", [])
    assert challenges == []
    assert isinstance(outcome, mech.Success) and outcome.identity == Identity("alice", "alice")
    assert verifies[0].password == b"secret"


def test_plain_without_initial_response_gets_empty_challenge() -> None:
    challenges, _, outcome = run(Plain(POLICY), None, [b"\0alice\0secret"])
    assert challenges == [b""]
    assert isinstance(outcome, mech.Success)


@pytest.mark.parametrize("data", [b"", b"alice", b"alice\0pw", b"\0al\0ice\0secret"])
def test_plain_needs_exactly_two_nuls(data: bytes) -> None:
    _, verifies, outcome = run(Plain(POLICY), data, [])
    assert outcome == mech.Failure(None) and not verifies


def test_plain_authzid_equal_or_empty() -> None:
    assert isinstance(run(Plain(POLICY), b"alice\0alice\0secret", [])[2], mech.Success)
    _, verifies, outcome = run(Plain(POLICY), b"bob\0alice\0secret", [])
    assert outcome == mech.Failure(Identity("alice", "alice")) and not verifies


def test_plain_case_and_invalid_names() -> None:
    _, _, outcome = run(Plain(POLICY), b"\0Alice\0secret", [])
    assert isinstance(outcome, mech.Success)
    assert outcome.identity == Identity("alice", "Alice")
    assert outcome.identity.reply_fields == (("original_user", "Alice"),)
    _, verifies, outcome = run(Plain(POLICY), b"\0alice+tag\0secret", [])
    assert outcome == mech.Failure(Identity("alice+tag", "alice+tag", valid=False)) and not verifies
    _, _, outcome = run(Plain(POLICY), b"\0\0secret", [])
    assert isinstance(outcome, mech.Failure) and outcome.identity is not None
    assert outcome.identity.reply_fields == (("original_user", ""),)


def test_plain_wrong_password() -> None:
    _, _, outcome = run(Plain(POLICY), b"\0alice\0wrong", [])
    assert isinstance(outcome, mech.Failure)
    assert outcome.lookup is not None and outcome.lookup.verdict is Verdict.PASSWORD_MISMATCH


def test_plain_nul_in_password_is_fine_but_extra_nul_is_not() -> None:
    _, verifies, _ = run(Plain(POLICY), b"\0alice\0", [])
    assert verifies[0].password == b""


def test_login_two_rounds() -> None:
    challenges, _, outcome = run(Login(POLICY), None, [b"alice", b"secret"])
    assert challenges == [b"Username:", b"Password:"]
    assert isinstance(outcome, mech.Success)


def test_login_initial_response_is_username() -> None:
    challenges, _, outcome = run(Login(POLICY), b"alice", [b"secret"])
    assert challenges == [b"Password:"]
    assert isinstance(outcome, mech.Success)
    challenges, _, _ = run(Login(POLICY), b"", [b"alice", b"secret"])
    assert challenges == [b"Username:", b"Password:"]


def test_login_bad_username_skips_password_round() -> None:
    challenges, _, outcome = run(Login(POLICY), None, [b""])
    assert challenges == [b"Username:"]
    assert outcome == mech.Failure(Identity("", "", valid=False))


def test_login_nul_fails_without_user_in_name_with_user_in_password() -> None:
    # Both observed on Dovecot 2.3.19: FAIL\t1 and FAIL\t1\tuser=alice.
    assert run(Login(POLICY), b"al\0ice", [])[2] == mech.Failure(None)
    outcome = run(Login(POLICY), b"alice", [b"se\0cret"])[2]
    assert outcome == mech.Failure(Identity("alice", "alice"))


def test_login_empty_password_reaches_passdb() -> None:
    _, verifies, outcome = run(Login(POLICY), b"alice", [b""])
    assert verifies[0].password == b"" and isinstance(outcome, mech.Failure)


def test_username_policy() -> None:
    policy = UsernamePolicy(default_domain="example.org")
    assert policy.identify("Bob") == Identity("bob@example.org", "Bob")
    assert policy.identify("bob@x.org") == Identity("bob@x.org", "bob@x.org")
    assert not policy.identify("bo b").valid
    assert not policy.identify("bøb").valid
    assert UsernamePolicy(lowercase=False).identify("Bob") == Identity("Bob", "Bob")


def test_flags_words() -> None:
    assert Plain.security.words() == ["plaintext"]
    flags = mech.SecurityFlags.DICTIONARY | mech.SecurityFlags.ACTIVE
    assert flags.words() == ["dictionary", "active"]


def test_password_never_in_repr() -> None:
    effect = mech.VerifyPlain(Identity("alice", "alice"), b"hunter2")
    assert "hunter2" not in repr(effect)
    assert "hunter2" not in repr(mech.ClientResponse(b"hunter2"))


@pytest.mark.parametrize("mechanism", [Plain, Login])
def test_password_must_be_utf8_unless_configured(mechanism: type[Plain] | type[Login]) -> None:
    latin1 = "jürgen".encode("latin-1")
    if mechanism is Plain:
        initial, answers = b"\0alice\0" + latin1, []
    else:
        initial, answers = b"alice", [latin1]
    _, verifies, outcome = run(mechanism(POLICY), initial, list(answers))
    assert verifies == [] and outcome == mech.Failure(Identity("alice", "alice"))
    legacy = UsernamePolicy(utf8_passwords=False)
    _, verifies, _ = run(mechanism(legacy), initial, list(answers))
    assert [v.password for v in verifies] == [latin1]
    utf8 = "jürgen".encode()
    good = (b"\0alice\0" + utf8, []) if mechanism is Plain else (b"alice", [utf8])
    assert [v.password for v in run(mechanism(POLICY), *good)[1]] == [utf8]


@settings(max_examples=400)
@given(
    st.lists(
        st.sampled_from([b"alice", b"Alice", b"bob", b"al ice", b"\xff", b"", b"x" * 300, b"\0"]),
        min_size=1,
        max_size=4,
    ).map(b"\0".join),
    st.sampled_from([b"secret", b"wrong", b"", b"\xff\xfe"]),
    st.sampled_from([POLICY, UsernamePolicy(saslprep=True), UsernamePolicy(utf8_passwords=False)]),
)
def test_plain_immediate_is_its_exchange(
    names: bytes, password: bytes, policy: UsernamePolicy
) -> None:
    """The session's shortcut (immediate) decides exactly as the generator does."""
    data = names + b"\0" + password
    check = Plain(policy).immediate(data)
    for verdict in (Verdict.OK, Verdict.PASSWORD_MISMATCH):
        lookup = Lookup(verdict, backend="x")
        gen = Plain(policy).exchange(AuthRequest(1, "PLAIN", "smtp", data))
        effect = next(gen, None)  # None: the exchange ended without a password check
        if effect is None:
            assert isinstance(check, mech.Failure)
            with pytest.raises(StopIteration) as stop:
                next(Plain(policy).exchange(AuthRequest(1, "PLAIN", "smtp", data)))
            assert stop.value.value == check
            continue
        assert check == effect and isinstance(effect, mech.VerifyPlain)
        with pytest.raises(StopIteration) as stop:
            gen.send(lookup)
        assert stop.value.value == mech.judged(effect.identity, lookup)


_NAMES = st.sampled_from(["alice", "Alice", "bob", "al ice", "\udcff", "", "x" * 300, "é", "Ⅸ"])


@settings(max_examples=200)
@given(
    st.lists(_NAMES, max_size=12),
    st.sampled_from(
        [{}, {"saslprep": True}, {"default_domain": "example.org", "lowercase": False}]
    ),
)
def test_identify_remembers_exactly_what_it_would_work_out(
    names: list[str], options: dict[str, Any]
) -> None:
    """identify() answers from its memory what a fresh policy works out, also after the
    memory filled up and started over."""
    policy = UsernamePolicy(**options)
    for index, name in enumerate(names * 2):
        if index == len(names):  # the second round: fill the memory up past its limit
            for filler in range(usernames.MEMO_LIMIT):
                policy.identify(f"filler{filler}")
        assert policy.identify(name) == UsernamePolicy(**options).identify(name)
    assert policy.identify("bob") is policy.identify("bob")
    assert len(policy._known) <= usernames.MEMO_LIMIT
    assert policy == UsernamePolicy(**options)  # the memory is no part of the value
