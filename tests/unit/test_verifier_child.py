"""The verifier child's request handling: the usual line answered in place (Chain.answer_now)
against the general path (decode_request + Chain.verify_plain), garbage, outages."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from saslauth import buildinfo, schemes, verifier
from saslauth.config import PasswdFileSettings
from saslauth.passdb import Lookup, Verdict
from saslauth.passdb.chain import Chain
from saslauth.passdb.passwd_file import PasswdFile
from saslauth.verifier import VerifyRequest
from saslauth.verifier.child import ChildProtocol
from tests.fixtures.transport import MemoryTransport

USERS = f"""\
alice:{{PLAIN}}secret
bob:{{PLAIN}}bobpw::::::nodelay allow_nets=10.0.0.0/8,::1/128
carol:{{PLAIN}}pw::::::user=caroline foo=bar
dave:{{PLAIN}}pw::::::nologin reason=Go\\ away
empty::::::
sha:{{SHA}}5en6G6MezRroT3XKqkdPOmY/BfQ=::::::nodelay
odd:{{NOSUCH}}c2VjcmV0
tab\tuser:{{PLAIN}}t\tpw
fünf:{{PLAIN}}pw
crypt:{schemes.generate("SHA512-CRYPT", b"pw", rounds=1000)}
"""
NAMES = ["alice", "bob", "carol", "dave", "empty", "sha", "odd", "tab\tuser", "fünf", "crypt"]
PASSWORDS = [b"secret", b"bobpw", b"pw", b"t\tpw", b"x", b"", b"pw\0", b"\x01t", b"\xff"]


def _db(path: Path, executor: ThreadPoolExecutor) -> PasswdFile:
    return PasswdFile(PasswdFileSettings(driver="passwd-file", path=str(path)), executor)


async def _serve(chain: Chain, data: bytes, replies: int) -> tuple[list[bytes], MemoryTransport]:
    """The child's reply lines (READY left out) once ``replies`` came, sorted by number."""
    proto = ChildProtocol(chain, asyncio.get_running_loop().create_future())
    transport = MemoryTransport()
    proto.connection_made(transport)
    proto.data_received(data)
    for _ in range(500):
        await asyncio.sleep(0.002)
        if transport.data.count(b"\n") >= replies + 1 or transport.closed:
            break
    lines = bytes(transport.data).split(b"\n")[1:-1]
    return sorted(lines, key=lambda line: verifier.decode_reply(line)[0]), transport


def _lines(requests: list[VerifyRequest], first: int = 0) -> bytes:
    return b"".join(verifier.encode_request(seq, r) for seq, r in enumerate(requests, first))


def _serve_file(path: Path, data: bytes, replies: int) -> tuple[list[bytes], MemoryTransport]:
    """_serve with a chain of one passwd-file at ``path``, in an event loop of its own."""

    async def scenario() -> tuple[list[bytes], MemoryTransport]:
        with ThreadPoolExecutor(1) as executor:
            return await _serve(Chain([_db(path, executor)]), data, replies)

    return asyncio.run(scenario())


_REQUESTS = st.lists(
    st.builds(
        VerifyRequest,
        user=st.sampled_from([*NAMES, "nobody", "", "al\x01ice"]),
        password=st.sampled_from(PASSWORDS),
        service=st.sampled_from(["smtp", "s\tp", ""]),
        rip=st.sampled_from([None, "10.1.2.3", "::1", "192.0.2.1"]),
        lip=st.sampled_from([None, "127.0.0.1"]),
        secured=st.booleans(),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(requests=_REQUESTS)
@example(requests=[VerifyRequest("alice", b"secret"), VerifyRequest("crypt", b"pw")])
@example(requests=[VerifyRequest("carol", b"no", rip="10.1.2.3")])
def test_child_answers_as_the_chain_does(tmp_path: Path, requests: list[VerifyRequest]) -> None:
    """Each reply is encode_reply of what Chain.verify_plain says for that request: whether
    the line was answered in place or went the general way (escaped fields, other schemes)."""
    path = tmp_path / "users"
    path.write_text(USERS)
    data = _lines(requests, 1)

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        with ThreadPoolExecutor(2) as executor:
            served, _ = await _serve(Chain([_db(path, executor)]), data, len(requests))
            reference = Chain([_db(path, executor)])
            expected = [
                verifier.encode_reply(seq, await reference.verify_plain(r))[:-1]
                for seq, r in enumerate(requests, 1)
            ]
        return served, expected

    served, expected = asyncio.run(scenario())
    assert served == expected


@pytest.mark.skipif(
    buildinfo.compiled(), reason="patches Chain, compiled here: runs in the pure-Python run"
)
def test_plain_lines_never_reach_verify_plain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The usual line for a PLAIN user (or an unknown one) is answered by answer_now alone;
    an escaped line and a non-PLAIN scheme still go through verify_plain."""
    path = tmp_path / "users"
    path.write_text(USERS)
    calls: list[str] = []
    real = Chain.verify_plain

    def counting(self: Chain, request: VerifyRequest):  # type: ignore[no-untyped-def]
        calls.append(request.user)
        return real(self, request)

    monkeypatch.setattr(Chain, "verify_plain", counting)
    requests = [
        VerifyRequest("alice", b"secret"),
        VerifyRequest("nobody", b"x"),
        VerifyRequest("empty", b""),
        VerifyRequest("tab\tuser", b"t\tpw"),
        VerifyRequest("sha", b"x"),
    ]
    lines, _ = _serve_file(path, _lines(requests), len(requests))
    assert [verifier.decode_reply(line)[1].verdict for line in lines] == [
        Verdict.OK,
        Verdict.USER_UNKNOWN,
        Verdict.PASSWORD_MISMATCH,
        Verdict.OK,
        Verdict.PASSWORD_MISMATCH,
    ]
    assert calls == ["tab\tuser", "sha"]


def test_a_chain_of_two_always_takes_the_general_path(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_text("alice:{PLAIN}secret\n")
    second.write_text("alice:{PLAIN}other\n")

    async def scenario() -> tuple[Lookup | None, Lookup | None, Lookup, str]:
        with ThreadPoolExecutor(1) as executor:
            one = Chain([_db(first, executor)]).answer_now("alice", b"x", None)
            two = Chain([_db(first, executor), _db(second, executor)])
            now = two.answer_now("alice", b"other", None)
            return (
                one,
                now,
                await two.verify_plain(VerifyRequest("alice", b"other")),
                two.passdbs[1].name,
            )

    one, now, ok, second_name = asyncio.run(scenario())
    assert one is not None and one.verdict is Verdict.PASSWORD_MISMATCH
    assert now is None
    assert ok.verdict is Verdict.OK and ok.backend == second_name


@pytest.mark.parametrize(
    "garbage",
    [
        b"V\tx\tbad\n",
        # a usual line but for a sequence number past int()'s 4300-digit limit
        b"V\t" + b"9" * 5000 + b"\talice\tsecret\tsmtp\t\t\t0\n",
        b"V\t" + b"9" * 5000 + b"\tal\x01tice\tsecret\tsmtp\t\t\t0\n",  # (escaped: decode_request)
    ],
    ids=["short", "huge-seq", "huge-seq-escaped"],
)
def test_garbage_in_a_batch_closes_with_no_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, garbage: bytes
) -> None:
    path = tmp_path / "users"
    path.write_text(USERS)
    good = verifier.encode_request(1, VerifyRequest("alice", b"secret"))
    with caplog.at_level(logging.ERROR, logger="saslauth.verifier"):
        lines, transport = _serve_file(path, good + garbage + good, 2)
    assert lines == [] and transport.closed
    assert "front process sent garbage (malformed verify request)" in caplog.text


def test_missing_file_is_a_temporary_failure_on_both_paths(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "missing"
    requests = [VerifyRequest("alice", b"secret"), VerifyRequest("al\tice", b"secret")]
    with caplog.at_level(logging.ERROR, logger="saslauth.passdb"):
        lines, _ = _serve_file(path, _lines(requests), 2)
    lookups = [verifier.decode_reply(line)[1] for line in lines]
    assert [lookup.verdict for lookup in lookups] == [Verdict.INTERNAL_FAILURE] * 2
    assert all("cannot read" in (lookup.log_reason or "") for lookup in lookups)


def test_a_bug_in_answer_now_fails_that_request_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "users"
    path.write_text(USERS)
    real = Chain.answer_now

    def buggy(self: Chain, user: str, password: bytes, rip: str | None) -> Lookup | None:
        if user == "bob":
            raise RuntimeError("boom")
        return real(self, user, password, rip)

    monkeypatch.setattr(Chain, "answer_now", buggy)
    requests = [VerifyRequest("bob", b"bobpw"), VerifyRequest("alice", b"secret")]
    with caplog.at_level(logging.ERROR, logger="saslauth.verifier"):
        lines, _ = _serve_file(path, _lines(requests), 2)
    verdicts = [verifier.decode_reply(line)[1].verdict for line in lines]
    assert verdicts == [Verdict.INTERNAL_FAILURE, Verdict.OK]
    assert "bug while verifying user bob" in caplog.text and "bobpw" not in caplog.text
