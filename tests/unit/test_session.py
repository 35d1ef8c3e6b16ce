"""Session transcripts: the real protocol and session code, a fake passdb, no sockets."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saslauth import buildinfo
from saslauth.logs import kv
from saslauth.passdb import Lookup, Verdict
from saslauth.session import Session
from saslauth.sessionsettings import SessionSettings
from saslauth.usernames import UsernamePolicy
from saslauth.verifier import VerifyRequest, decode_request
from saslauth.verifier.client import Done
from tests.fixtures.transport import MemoryTransport

USERS = {"alice": b"secret", "bob": b"bobpw"}
GOOD = "AGFsaWNlAHNlY3JldA=="  # \0alice\0secret
WRONG = "AGFsaWNlAHdyb25n"  # \0alice\0wrong


class Harness:
    def __init__(
        self,
        delay: float = 0.0,
        tempfail: str = "fail",
        outage: bool = False,
        immediate: bool = True,
        quick: bool = True,
        log_successes: bool = True,
    ) -> None:
        self.requests: list[VerifyRequest] = []
        self.outage = outage
        settings = SessionSettings.create(
            ["PLAIN", "LOGIN"], UsernamePolicy(), failure_delay=delay, tempfail=tempfail, spid=1
        )
        if not immediate:  # every mechanism stepped as a generator, PLAIN's shortcut unused
            settings = dataclasses.replace(settings, immediates={})
        settings = dataclasses.replace(settings, log_successes=log_successes)
        self.session = Session(settings, self.to_verifier, 1, "00" * 16)
        if not quick:  # AUTH lines always parsed into an AuthRequest (no quick_auth)
            self.session.conn.quick_auth = lambda data, mechanisms: None  # type: ignore[method-assign]
        self.transport = MemoryTransport()
        self.session.connection_made(self.transport)
        greeting = self.transport.lines()
        assert greeting[0] == "VERSION\t1\t2" and greeting[-1] == "DONE"

    def to_verifier(self, fields: bytes, done: Done) -> None:
        """Answers on a later loop turn, as the verifier client does; the request as the
        verifier child would decode it."""
        _, request = decode_request(b"V\t1" + fields.removesuffix(b"\n"))
        self.verify(request).add_done_callback(lambda future: done(future.result()))

    def verify(self, request: VerifyRequest) -> asyncio.Future[Lookup]:
        self.requests.append(request)
        future: asyncio.Future[Lookup] = asyncio.get_running_loop().create_future()
        if self.outage:
            future.set_result(Lookup(Verdict.INTERNAL_FAILURE, backend="fake"))
        elif request.user not in USERS:
            future.set_result(Lookup(Verdict.USER_UNKNOWN, backend="fake"))
        elif USERS[request.user] == request.password:
            future.set_result(Lookup(Verdict.OK, backend="fake"))
        else:
            future.set_result(Lookup(Verdict.PASSWORD_MISMATCH, backend="fake"))
        return future

    async def send(self, *lines: str, wait: float = 0.01) -> list[str]:
        self.session.data_received("".join(line + "\n" for line in lines).encode())
        await asyncio.sleep(wait)
        return self.transport.lines()


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())  # type: ignore[arg-type]


async def _connected(h: Harness, minor: int = 0) -> None:
    assert await h.send(f"VERSION\t1\t{minor}", "CPID\t4242") == []


async def _play(h: Harness, lines: list[str], settle: float) -> list[str]:
    """Connect, send ``lines`` one read each until the session closes, wait ``settle``
    seconds for delayed answers; every line the client got."""
    await _connected(h)
    replies: list[str] = []
    for line in lines:
        if h.transport.closed:
            break
        replies += await h.send(line, wait=0)
    await asyncio.sleep(settle)
    return replies + h.transport.lines()


def test_transcripts_success_paths() -> None:
    async def body() -> None:
        h = Harness()
        await _connected(h)
        assert await h.send(
            "AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1"
            f"\tsecured\tresp={GOOD}"
        ) == ["OK\t1\tuser=alice"]
        assert h.requests[-1].secured and h.requests[-1].rip == "127.0.0.1"
        assert await h.send("AUTH\t2\tPLAIN\tservice=smtp") == ["CONT\t2\t"]
        assert await h.send(f"CONT\t2\t{GOOD}") == ["OK\t2\tuser=alice"]
        assert await h.send("AUTH\t3\tLOGIN\tservice=smtp") == ["CONT\t3\tVXNlcm5hbWU6"]
        assert await h.send("CONT\t3\tYWxpY2U=") == ["CONT\t3\tUGFzc3dvcmQ6"]
        assert await h.send("CONT\t3\tc2VjcmV0") == ["OK\t3\tuser=alice"]
        assert await h.send("AUTH\t4\tLOGIN\tservice=smtp\tresp=YWxpY2U=") == [
            "CONT\t4\tUGFzc3dvcmQ6"
        ]
        assert await h.send("CONT\t4\tc2VjcmV0") == ["OK\t4\tuser=alice"]
        assert await h.send("AUTH\t5\tPLAIN\tservice=smtp\tresp=AEFsaWNlAHNlY3JldA==") == [
            "OK\t5\tuser=alice\toriginal_user=Alice"
        ]
        assert await h.send("AUTH\t1\tplain\tservice=smtp\tresp=" + GOOD) == ["OK\t1\tuser=alice"]
        assert not h.transport.closed

    run(body)


def test_transcripts_failures() -> None:
    async def body() -> None:
        h = Harness()
        await _connected(h)
        assert await h.send(f"AUTH\t7\tPLAIN\tservice=smtp\tresp={WRONG}") == [
            "FAIL\t7\tuser=alice"
        ]
        assert await h.send("AUTH\t8\tPLAIN\tservice=smtp\tresp=AG5vYm9keQBzZWNyZXQ=") == [
            "FAIL\t8\tuser=nobody"
        ]  # unknown user: same shape as a wrong password
        assert await h.send("AUTH\t9\tPLAIN\tservice=smtp\tresp=AGFsaWNlK3RhZwBzZWNyZXQ=") == [
            "FAIL\t9\tuser=alice+tag\toriginal_user=alice+tag"
        ]
        assert await h.send("AUTH\t10\tPLAIN\tservice=smtp\tresp=AABzZWNyZXQ=") == [
            "FAIL\t10\tuser=\toriginal_user="
        ]
        assert await h.send("AUTH\t11\tPLAIN\tservice=smtp\tresp=AGFsAGljZQBzZWNyZXQ=") == [
            "FAIL\t11"
        ]
        assert await h.send("AUTH\t12\tLOGIN\tservice=smtp") == ["CONT\t12\tVXNlcm5hbWU6"]
        assert await h.send("CONT\t12\t") == ["FAIL\t12\tuser=\toriginal_user="]
        assert await h.send("AUTH\t13\tPLAIN\tservice=smtp\tresp==") == ["FAIL\t13"]
        assert await h.send("AUTH\t14\tPLAIN\tservice=smtp\tresp=!!!!") == [
            "FAIL\t14\tcode=invalid_base64\treason=Invalid base64 data in initial response"
        ]
        assert await h.send("CONT\t55\tAAAA") == [
            "FAIL\t55\treason=Authentication request timed out"
        ]
        assert await h.send("AUTH\t15\tPLAIN\tservice=smtp\tresp=Ym9iAGFsaWNlAHNlY3JldA==") == [
            "FAIL\t15\tuser=alice"
        ]
        assert not h.transport.closed

    run(body)


def test_minor_version_resp_rule() -> None:
    async def body() -> None:
        h = Harness()
        await _connected(h, minor=0)
        assert await h.send("AUTH\t1\tPLAIN\tservice=smtp\tresp=") == ["CONT\t1\t"]
        h2 = Harness()
        await _connected(h2, minor=2)
        assert await h2.send("AUTH\t1\tPLAIN\tservice=smtp\tresp=") == ["FAIL\t1"]

    run(body)


def test_failure_delay_does_not_block_others() -> None:
    async def body() -> None:
        h = Harness(delay=0.3)
        await _connected(h)
        assert await h.send(f"AUTH\t1\tPLAIN\tservice=smtp\tresp={WRONG}") == []
        # a success on the same connection is answered at once while the FAIL waits
        assert await h.send(f"AUTH\t2\tPLAIN\tservice=smtp\tresp={GOOD}") == ["OK\t2\tuser=alice"]
        await asyncio.sleep(0.35)
        assert h.transport.lines() == ["FAIL\t1\tuser=alice"]

    run(body)


def test_delayed_fail_holds_its_id() -> None:
    async def body() -> None:
        h = Harness(delay=0.2)
        await _connected(h)
        await h.send(f"AUTH\t1\tPLAIN\tservice=smtp\tresp={WRONG}")
        await h.send(f"AUTH\t1\tPLAIN\tservice=smtp\tresp={GOOD}")
        assert h.transport.closed  # reusing an id before its reply: closed, never two replies

    run(body)


def test_unexpected_continuation_drops_request() -> None:
    async def body() -> None:
        h = Harness(delay=0.1)
        await _connected(h)
        assert await h.send(
            f"AUTH\t1\tPLAIN\tservice=smtp\tresp={WRONG}", f"CONT\t1\t{GOOD}", wait=0.0
        ) == ["FAIL\t1\treason=Unexpected continuation"]
        await asyncio.sleep(0.2)
        assert h.transport.lines() == []  # the dropped request never answers

    run(body)


def test_cancel_and_timeout_transcript() -> None:
    async def body() -> None:
        h = Harness()
        await _connected(h)
        assert await h.send("AUTH\t1\tLOGIN\tservice=smtp") == ["CONT\t1\tVXNlcm5hbWU6"]
        assert await h.send("CANCEL\t1") == []
        assert await h.send("CONT\t1\tYWxpY2U=") == [
            "FAIL\t1\treason=Authentication request timed out"
        ]
        assert await h.send("CANCEL\t999") == []
        await h.send("CANCEL\tx")
        assert h.transport.closed

    run(body)


@pytest.mark.parametrize("mode", ["fail", "disconnect"])
def test_tempfail_modes(mode: str) -> None:
    async def body() -> None:
        h = Harness(tempfail=mode, outage=True)
        await _connected(h)
        lines = await h.send(f"AUTH\t1\tPLAIN\tservice=smtp\tresp={GOOD}")
        if mode == "fail":
            assert lines == ["FAIL\t1\tuser=alice\tcode=temp_fail"]
            assert not h.transport.closed
        else:
            assert lines == [] and h.transport.closed

    run(body)


def test_protocol_violation_closes_and_drops_pending() -> None:
    async def body() -> None:
        h = Harness(delay=0.1)
        await _connected(h)
        await h.send(
            f"AUTH\t1\tPLAIN\tservice=smtp\tresp={WRONG}", "AUTH\t2\tDIGEST-MD5\tservice=x"
        )
        assert h.transport.closed
        await asyncio.sleep(0.15)  # the pending FAIL is never written after the close

    run(body)


def test_many_pipelined_requests() -> None:
    async def body() -> None:
        h = Harness()
        await _connected(h)
        lines = await h.send(
            *(f"AUTH\t{i}\tPLAIN\tservice=smtp\tresp={GOOD}" for i in range(1, 201))
        )
        assert sorted(lines) == sorted(f"OK\t{i}\tuser=alice" for i in range(1, 201))

    run(body)


def test_idle_request_is_dropped_silently(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dovecot's 150-s idle timeout (T40/T62), scaled down: each CONT restarts it."""
    import saslauth.session

    monkeypatch.setattr(saslauth.session, "IDLE_TIMEOUT", 0.3)

    async def body() -> None:
        h = Harness()
        await _connected(h)
        assert await h.send("AUTH\t1\tLOGIN\tservice=smtp") == ["CONT\t1\tVXNlcm5hbWU6"]
        await asyncio.sleep(0.2)  # not yet expired: the answer restarts the timer
        assert await h.send("CONT\t1\tYWxpY2U=") == ["CONT\t1\tUGFzc3dvcmQ6"]
        await asyncio.sleep(0.2)
        assert h.transport.lines() == []  # 0.4 s since AUTH, 0.2 s since the last CONT
        await asyncio.sleep(0.25)
        assert h.transport.lines() == []  # expired: dropped without a word
        assert await h.send("CONT\t1\tc2VjcmV0") == [
            "FAIL\t1\treason=Authentication request timed out"
        ]
        assert not h.transport.closed

    run(body)


_B64 = ["", "=", "!!!!", GOOD, WRONG, "YWxpY2U=", "c2VjcmV0", "AA==", "AGFsAGljZQBzZWNyZXQ="]
_LINES = st.one_of(
    st.builds(
        lambda i, m, r: f"AUTH\t{i}\t{m}\tservice=smtp" + ("" if r is None else f"\tresp={r}"),
        st.integers(1, 3), st.sampled_from(["PLAIN", "LOGIN", "plain", "CRAM-MD5"]),
        st.one_of(st.none(), st.sampled_from(_B64)),
    ),
    st.builds(lambda i, d: f"CONT\t{i}\t{d}", st.integers(1, 4), st.sampled_from(_B64)),
    st.builds(lambda i: f"CANCEL\t{i}", st.integers(1, 4)),
    st.sampled_from(["", "FOO", "CONT\t1", "AUTH\t1", "VERSION\t1\t2"]),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_LINES, max_size=12), st.booleans())
def test_any_line_sequence_never_crashes_or_answers_twice(lines: list[str], delay: bool) -> None:
    """Fuzzed transcripts: no exception, no write after close, one final answer per AUTH."""

    async def body() -> None:
        h = Harness(delay=0.05 if delay else 0.0)
        replies = await _play(h, lines, settle=0.1)
        auths: dict[str, int] = {}
        for line in lines:
            fields = line.split("\t")
            if fields[0] == "AUTH" and len(fields) > 2:
                auths[fields[1]] = auths.get(fields[1], 0) + 1
        finals: dict[str, int] = {}
        for reply in replies:
            fields = reply.split("\t")
            assert fields[0] in ("OK", "FAIL", "CONT"), reply
            if fields[0] == "OK" or (fields[0] == "FAIL" and "timed out" not in reply):
                finals[fields[1]] = finals.get(fields[1], 0) + 1
        for request_id, count in finals.items():
            assert count <= auths.get(request_id, 0), (request_id, lines, replies)

    run(body)


# PLAIN initial responses for each way the exchange can end: OK, wrong, unknown, refused name,
# other authzid, same authzid, upper case, non-UTF-8 password, wrong NUL counts, empty.
_PLAIN_RESPS = [
    "AGFsaWNlAHNlY3JldA==",
    "AGFsaWNlAHdyb25n",
    "AG5vYm9keQBzZWNyZXQ=",
    "AGFsaWNlK3RhZwBzZWNyZXQ=",
    "Ym9iAGFsaWNlAHNlY3JldA==",
    "YWxpY2UAYWxpY2UAc2VjcmV0",
    "AEFsaWNlAHNlY3JldA==",
    "AGFsaWNlAP8=",
    "AABzZWNyZXQ=",
    "AGFsaWNlAA==",
    "AGFsaWNl",
    "/wD/AHg=",
    "=",
    "",
]
_PLAIN_LINES = st.builds(
    lambda i, f, r: f"AUTH\t{i}\tPLAIN\t{f}\tresp={r}",
    st.integers(1, 3),
    st.sampled_from(
        [
            "service=smtp",
            "service=smtp\tnologin\tlip=127.0.0.1\trip=10.0.0.1",
            "service=imap\tsecured\trip=::ffff:10.0.0.1\tlport=25",
            "service=s m\tlip=unknown\tsecured=tls",
            "service=sm\x01ttp\trip=192.0.2.1",
        ]
    ),
    st.sampled_from(_PLAIN_RESPS),
)


class _AuthLines(logging.Handler):
    """The auth: lines logged, without their latency (which differs from run to run)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(re.sub(r" latency_ms=[0-9.]+$", "", record.getMessage()))


@contextlib.contextmanager
def _auth_lines() -> Iterator[_AuthLines]:
    """The auth: lines logged meanwhile (saslauth.auth at INFO, whatever the root's level)."""
    logged = _AuthLines()
    logger = logging.getLogger("saslauth.auth")
    level = logger.level
    logger.addHandler(logged)
    logger.setLevel(logging.INFO)
    try:
        yield logged
    finally:
        logger.removeHandler(logged)
        logger.setLevel(level)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_PLAIN_LINES, _LINES), max_size=10), st.booleans(), st.booleans())
def test_plain_shortcut_answers_as_the_generator(
    lines: list[str], delay: bool, outage: bool
) -> None:
    """PLAIN with an initial response skips the generator (mech.Immediate), and its usual
    AUTH line the AuthRequest (quick_auth); the wire, the password checks asked for and the
    connection's fate are the same as without either shortcut."""

    async def transcript(
        immediate: bool, quick: bool
    ) -> tuple[list[str], list[VerifyRequest], bool, list[str]]:
        h = Harness(
            delay=0.01 if delay else 0.0, outage=outage, immediate=immediate, quick=quick
        )
        with _auth_lines() as logged:
            replies = await _play(h, lines, settle=0.03)
        # the lines are captured (every OK was logged as one)
        oks = sum(line.startswith("auth: result=ok ") for line in logged.lines)
        assert oks == sum(reply.startswith("OK\t") for reply in replies)
        return replies, h.requests, h.transport.closed, logged.lines

    async def body() -> None:
        stepped = await transcript(False, True)  # (no immediates: quick_auth takes nothing)
        if not buildinfo.compiled():  # (quick=False patches the compiled ServerConnection)
            assert await transcript(True, False) == stepped
        assert await transcript(True, True) == stepped

    run(body)


_LOOKUPS = st.tuples(
    st.sampled_from(list(Verdict)),
    st.sampled_from(["", "passwd-file", "my db"]),
    st.sampled_from([None, "", "account locked", 'say "no"']),
    st.sampled_from([None, "delay:1.50s:network"]),
    st.sampled_from(["", "hit", "miss"]),
).map(lambda t: Lookup(t[0], backend=t[1], log_reason=t[2], limited=t[3], cache=t[4]))


@settings(max_examples=200)
@given(st.lists(st.one_of(st.none(), _LOOKUPS), max_size=6))
def test_log_outcome_text_is_remembered_per_lookup(lookups: list[Lookup | None]) -> None:
    """The auth line's verdict part is worked out once per Lookup object; fresh and repeated
    Lookups (and None: invalid input) read as the rule says, also after the memo filled up."""
    from saslauth import authlog

    def expected(lookup: Lookup | None) -> str:
        if lookup is None:
            return "verdict=invalid_input backend=-"
        backend = kv(lookup.backend) if lookup.backend else "-"
        text = f"verdict={lookup.verdict.value} backend={backend}"
        text += f" cache={lookup.cache}" if lookup.cache else ""
        text += f" reason={kv(lookup.log_reason)}" if lookup.log_reason else ""
        return text + (f" limited={lookup.limited}" if lookup.limited else "")

    for lookup in lookups + lookups:
        assert authlog.outcome_text(lookup) == expected(lookup)
    for index in range(authlog.MEMO_LIMIT + 1):  # overflow: the memory starts over
        authlog.value_text(f"s{index}")
        authlog.outcome_text(Lookup(Verdict.OK, backend=f"b{index}"))
    assert authlog.value_text("smtp") == "smtp" and authlog.value_text("a b") == '"a b"'
    assert authlog.value_text("") == '""'  # service= (empty) as kv() quotes it
    assert len(authlog._TEXTS) <= authlog.MEMO_LIMIT
    for name in ("alice", "a b", 'say "hi"', "tab\there", "", "alice"):
        assert authlog.value_text(name) == kv(name)
    for lookup in lookups:
        assert authlog.outcome_text(lookup) == expected(lookup)


@pytest.mark.parametrize(
    ("mechanism", "line"),
    [
        ("immediate", f"AUTH\t1\tPLAIN\tservice=smtp\tresp={GOOD}"),  # the one-call shortcut
        ("exchange", "AUTH\t1\tLOGIN\tservice=smtp"),  # a stepped generator
    ],
)
def test_a_bug_in_a_mechanism_is_a_temporary_failure(
    monkeypatch: pytest.MonkeyPatch, mechanism: str, line: str
) -> None:
    """A mechanism that raises answers its own request with a temporary failure; the
    connection and its other requests go on."""
    from saslauth.mechanisms.login import Login
    from saslauth.mechanisms.plain import Plain

    def broken(*args: object) -> object:
        raise RuntimeError("bug")

    def broken_exchange(*args: object) -> Iterator[object]:  # raises when first stepped
        yield from broken()  # type: ignore[misc]

    if mechanism == "immediate":
        monkeypatch.setattr(Plain, "immediate", broken)
    else:
        monkeypatch.setattr(Login, "exchange", broken_exchange)

    async def body() -> None:
        h = Harness()
        await _connected(h)
        assert await h.send(line) == ["FAIL\t1\tcode=temp_fail"]
        assert not h.transport.closed and not h.session.pending
        if mechanism == "exchange":
            assert await h.send(f"AUTH\t2\tPLAIN\tservice=smtp\tresp={GOOD}") == [
                "OK\t2\tuser=alice"
            ]

    run(body)


@pytest.mark.parametrize("log_successes", [True, False])
def test_auth_log_failures_only(log_successes: bool) -> None:
    """auth_log: failures (log_successes off) drops the line of a successful attempt only;
    the replies are the same either way."""

    async def body() -> None:
        h = Harness(log_successes=log_successes)
        with _auth_lines() as logged:
            await _connected(h)
            replies = await h.send(f"AUTH\t1\tPLAIN\tservice=smtp\tresp={GOOD}")
            replies += await h.send("AUTH\t2\tPLAIN\tservice=smtp\tresp=AGFsaWNlAHdyb25n")
            replies += await h.send("AUTH\t3\tLOGIN\tservice=smtp", "CONT\t3\tYWxpY2U=")
            replies += await h.send("CONT\t3\tc2VjcmV0")
        assert replies == [
            "OK\t1\tuser=alice",
            "FAIL\t2\tuser=alice",
            "CONT\t3\tVXNlcm5hbWU6",
            "CONT\t3\tUGFzc3dvcmQ6",
            "OK\t3\tuser=alice",
        ]
        results = [line.split()[1] for line in logged.lines]
        expected = ["result=ok", "result=fail", "result=ok"] if log_successes else ["result=fail"]
        assert results == expected

    run(body)
