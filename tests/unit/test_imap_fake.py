"""The IMAP driver against a tiny scripted in-process server: the edge cases Dovecot won't show.

Each test scripts the server side of one conversation (greeting, capabilities, replies) and
checks the verdict or the outage, and what the client sent.  Real Dovecot is tested in
tests/integration/test_imap.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import socket
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saslauth.config import ImapSettings
from saslauth.errors import BackendError, BackendTimeout
from saslauth.passdb import Lookup, Verdict
from saslauth.passdb.imap import Imap
from saslauth.verifier import VerifyRequest
from tests.unit.test_imap_wire import decode_command

PASSWORD = b"p4ss word"
GREETING = b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake ready\r\n"


@dataclass
class Peer:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    received: list[bytes] = field(default_factory=list)

    async def line(self) -> bytes:
        data = await self.reader.readline()
        if not data:
            raise EOFError
        self.received.append(data)
        return data

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def nothing_more(self, wait: float = 0.1) -> bool:
        """True if the client sends nothing within ``wait`` seconds."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), wait)
        except TimeoutError:
            return True
        if not data:
            return True  # the client hung up
        self.received.append(data)
        return False

    async def logout(self) -> None:
        tag = (await self.line()).split(b" ", 1)[0]
        await self.send(b"* BYE bye\r\n" + tag + b" OK Logout completed.\r\n")


Script = Callable[[Peer], Awaitable[None]]


@dataclass
class Outcome:
    result: Lookup | BackendError
    received: list[bytes]
    connections: int
    log: str = ""

    @property
    def verdict(self) -> Verdict:
        assert isinstance(self.result, Lookup), self.result
        return self.result.verdict

    @property
    def error(self) -> str:
        assert isinstance(self.result, BackendError), self.result
        return str(self.result)

    @property
    def sent(self) -> bytes:
        return b"".join(self.received)


def run(
    script: Script,
    *,
    user: str = "alice",
    password: bytes = PASSWORD,
    caplog: pytest.LogCaptureFixture | None = None,
    bind: str = "127.0.0.1",
    **settings: Any,
) -> Outcome:
    peers: list[Peer] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(reader, writer)
        peers.append(peer)
        with contextlib.suppress(EOFError, ConnectionError):
            await script(peer)
        writer.close()

    async def main() -> Lookup | BackendError:
        server = await asyncio.start_server(handle, bind, 0)
        port = server.sockets[0].getsockname()[1]
        options: dict[str, Any] = {"tls": "none", "timeout": 2.0, "connect_timeout": 1.0}
        options.update({"host": bind, **settings})
        driver = Imap(
            ImapSettings(driver="imap", port=port, **options),
            cast(Executor, None),
        )
        try:
            return await driver.verify_plain(VerifyRequest(user, password))
        except BackendError as exc:
            return exc
        finally:
            await asyncio.sleep(0.05)  # let the server side finish reading
            server.close()
            await server.wait_closed()

    if caplog is not None:
        caplog.set_level(logging.DEBUG)
    result = asyncio.run(main())
    received = [line for peer in peers for line in peer.received]
    outcome = Outcome(result, received, len(peers), caplog.text if caplog else "")
    text = outcome.log + (str(result) if isinstance(result, BackendError) else "")
    assert PASSWORD.decode() not in text
    assert not password or password.decode("utf-8", "replace") not in text
    return outcome


async def login_reply(peer: Peer, reply: bytes, *, greeting: bytes = GREETING) -> None:
    await peer.send(greeting)
    tag = (await peer.line()).split(b" ", 1)[0]
    await peer.send(tag + b" " + reply + b"\r\n")
    await peer.logout()


def test_ok_with_untagged_noise_then_logout(caplog: pytest.LogCaptureFixture) -> None:
    async def script(peer: Peer) -> None:
        await peer.send(b"* OK fake ready, no capabilities here\r\n")
        assert await peer.line() == b"a1 CAPABILITY\r\n"
        await peer.send(b"* CAPABILITY IMAP4rev1 ID\r\n* OK [ALERT] noise\r\na1 OK done\r\n")
        tag = (await peer.line()).split(b" ", 1)[0]
        await peer.send(b"* 3 EXISTS\r\n* ID {4}\r\nx\r\ny\r\n" + tag + b" OK Logged in\r\n")
        await peer.logout()

    outcome = run(script, caplog=caplog)
    assert outcome.verdict is Verdict.OK
    assert outcome.received == [
        b"a1 CAPABILITY\r\n",
        b'a2 LOGIN "alice" "p4ss word"\r\n',
        b"a3 LOGOUT\r\n",
    ]


def test_no_is_a_mismatch_and_unavailable_is_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    no = run(lambda p: login_reply(p, b"NO [AUTHENTICATIONFAILED] Authentication failed."))
    assert no.verdict is Verdict.PASSWORD_MISMATCH
    assert isinstance(no.result, Lookup)
    assert no.result.log_reason == "imap NO [AUTHENTICATIONFAILED] Authentication failed."
    assert no.received[-1] == b"a2 LOGOUT\r\n"
    down = run(lambda p: login_reply(p, b"NO [UNAVAILABLE] Internal error"), caplog=caplog)
    assert "login answered NO: Internal error" in down.error


def test_bad_and_bye_mid_login_are_outages() -> None:
    bad = run(lambda p: login_reply(p, b"BAD Error in IMAP command"))
    assert "login answered BAD" in bad.error

    async def bye(peer: Peer) -> None:
        await peer.send(GREETING)
        await peer.line()
        await peer.send(b"* BYE Server shutting down.\r\n")

    assert "said BYE: Server shutting down." in run(bye).error


def test_logindisabled_uses_authenticate_plain_with_sasl_ir() -> None:
    greeting = b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGINDISABLED AUTH=PLAIN] hi\r\n"
    outcome = run(lambda p: login_reply(p, b"OK Logged in", greeting=greeting))
    assert outcome.verdict is Verdict.OK
    command = outcome.received[0]
    assert command.startswith(b"a1 AUTHENTICATE PLAIN ")
    assert base64.b64decode(command.split()[3]) == b"\0alice\0" + PASSWORD


def test_authenticate_plain_without_sasl_ir_waits_for_continuation() -> None:
    async def script(peer: Peer) -> None:
        await peer.send(b"* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=PLAIN] hi\r\n")
        assert await peer.line() == b"a1 AUTHENTICATE PLAIN\r\n"
        assert await peer.nothing_more()
        await peer.send(b"+ \r\n")
        assert base64.b64decode(await peer.line()) == b"\0alice\0" + PASSWORD
        await peer.send(b"a1 NO [AUTHENTICATIONFAILED] nope\r\n")
        await peer.logout()

    assert run(script).verdict is Verdict.PASSWORD_MISMATCH


def test_logindisabled_without_auth_plain_never_sends_the_password() -> None:
    outcome = run(lambda p: login_reply(p, b"OK", greeting=b"* OK [CAPABILITY LOGINDISABLED]\r\n"))
    assert "LOGINDISABLED and no AUTH=PLAIN" in outcome.error
    assert PASSWORD not in outcome.sent


def test_literal_waits_for_continuation_and_refusal_is_handled() -> None:
    password = "pässwörd ünd {mehr}".encode()

    async def script(peer: Peer) -> None:
        await peer.send(b"* OK [CAPABILITY IMAP4rev1] hi\r\n")
        assert await peer.line() == b'a1 LOGIN "alice" {%d}\r\n' % len(password)
        assert await peer.nothing_more()  # a synchronizing literal: no byte before "+"
        await peer.send(b"+ Ready for literal data\r\n")
        assert await peer.line() == password + b"\r\n"
        await peer.send(b"a1 OK Logged in\r\n")
        await peer.logout()

    assert run(script, password=password).verdict is Verdict.OK

    async def refuse(peer: Peer) -> None:
        await peer.send(b"* OK [CAPABILITY IMAP4rev1] hi\r\n")
        await peer.line()
        await peer.send(b"a1 BAD literal too big\r\n")

    refused = run(refuse, password=password)
    assert "login answered BAD" in refused.error and password not in refused.sent


def test_long_credentials_prefer_authenticate_when_offered() -> None:
    password = b"x" * 2000
    outcome = run(lambda p: login_reply(p, b"OK"), password=password)
    assert outcome.received[0].startswith(b"a1 AUTHENTICATE PLAIN\r\n")


@pytest.mark.parametrize(
    ("greeting", "message"),
    [
        (b"* PREAUTH [CAPABILITY IMAP4rev1] logged in already\r\n", "greeting PREAUTH"),
        (b"* BYE Too many connections\r\n", "greeting BYE: Too many connections"),
        (b"\xff\xfe\x00garbage\r\n", "malformed response"),
        (b"* OK " + b"A" * 9000, "line longer than 8192"),
        (b"", "closed the connection"),
    ],
)
def test_bad_greetings_are_outages(greeting: bytes, message: str) -> None:
    async def script(peer: Peer) -> None:
        await peer.send(greeting)
        await peer.nothing_more(0.2)

    outcome = run(script)
    assert message in outcome.error
    assert PASSWORD not in outcome.sent


def test_foreign_tag_and_stray_continuation_are_outages() -> None:
    foreign = run(lambda p: login_reply(p, b"OK", greeting=GREETING + b"zz OK\r\n"))
    assert "never sent" in foreign.error

    async def stray(peer: Peer) -> None:
        await peer.send(GREETING)
        await peer.line()
        await peer.send(b"+ what?\r\n")
        await peer.nothing_more()

    assert "unexpected continuation" in run(stray).error


def test_silent_server_times_out() -> None:
    async def silent(peer: Peer) -> None:
        await peer.nothing_more(2.0)

    outcome = run(silent, timeout=0.3)
    assert isinstance(outcome.result, BackendTimeout)
    assert "no answer within 0.3s" in outcome.error


def test_a_server_stuck_after_the_verdict_does_not_turn_it_into_a_timeout() -> None:
    async def stuck(peer: Peer) -> None:
        await peer.send(GREETING)
        tag = (await peer.line()).split(b" ", 1)[0]
        await peer.send(tag + b" OK Logged in\r\n")
        await peer.line()  # LOGOUT: never answered
        await peer.nothing_more(3.0)

    outcome = run(stuck, timeout=0.4)
    assert outcome.verdict is Verdict.OK
    assert outcome.received[-1] == b"a2 LOGOUT\r\n"


def test_starttls_reply_followed_by_injected_data_is_refused() -> None:
    async def inject(peer: Peer) -> None:
        await peer.send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n")
        assert await peer.line() == b"a1 STARTTLS\r\n"
        await peer.send(b"a1 OK Begin TLS negotiation now.\r\na2 OK Logged in\r\n")
        await peer.nothing_more()

    outcome = run(inject, tls="starttls")
    assert "data after the STARTTLS reply" in outcome.error
    assert outcome.received == [b"a1 STARTTLS\r\n"]


def test_starttls_not_offered_or_refused() -> None:
    async def plain(peer: Peer) -> None:
        await peer.send(b"* OK hi\r\n")
        assert await peer.line() == b"a1 CAPABILITY\r\n"
        await peer.send(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\na1 OK\r\n")
        await peer.nothing_more()

    assert "does not offer STARTTLS" in run(plain, tls="starttls").error
    refuse = run(
        lambda p: login_reply(p, b"NO not now", greeting=b"* OK [CAPABILITY STARTTLS]\r\n"),
        tls="starttls",
    )
    assert "STARTTLS refused: NO not now" in refuse.error


@pytest.mark.parametrize("password", [b"", b"a\0b", b"a\r\nb", b"line\n"])
def test_unsendable_passwords_fail_without_a_connection(password: bytes) -> None:
    outcome = run(lambda p: login_reply(p, b"OK"), password=password)
    assert outcome.verdict is Verdict.PASSWORD_MISMATCH and outcome.connections == 0


def test_connection_refused_is_an_outage() -> None:
    async def main() -> str:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        settings = ImapSettings(driver="imap", host="127.0.0.1", port=port, tls="none")
        with pytest.raises(BackendError) as info:
            await Imap(settings, cast(Executor, None)).verify_plain(VerifyRequest("a", b"b"))
        return str(info.value)

    assert "refused" in asyncio.run(main()).lower()


def test_bracketed_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        socket.create_server(("::1", 0)).close()
    except OSError as exc:
        pytest.skip(f"cannot bind ::1: {exc}")
    outcome = run(lambda p: login_reply(p, b"OK"), bind="::1", host="[::1]")
    assert outcome.verdict is Verdict.OK


async def literal_aware_login(peer: Peer, expected: tuple[bytes, bytes]) -> None:
    """A server that reads LOGIN like Dovecot does: "+" before each literal, then checks it."""
    await peer.send(b"* OK [CAPABILITY IMAP4rev1] hi\r\n")
    pieces = [await peer.line()]  # each literal's bytes start a new piece, as the client sent
    while (literal := re.search(rb"\{(\d+)\}\r\n$", pieces[-1])) is not None:
        await peer.send(b"+ OK\r\n")
        data = await peer.reader.readexactly(int(literal.group(1)))
        pieces.append(data + await peer.line())
    tag, verb, args = decode_command(pieces)
    ok = (verb, tuple(args)) == (b"LOGIN", expected)
    await peer.send(tag + (b" OK Logged in\r\n" if ok else b" NO [AUTHENTICATIONFAILED] no\r\n"))
    await peer.logout()


@settings(max_examples=40, deadline=None)
@given(
    # Names reach the driver as UTF-8 decoded text (wire.decode_text): never a lone surrogate.
    st.text(
        alphabet=st.characters(codec="utf-8", blacklist_characters="\0\r\n"),
        min_size=1,
        max_size=40,
    ),
    st.binary(min_size=1, max_size=400).filter(lambda b: not set(b) & {0, 10, 13}),
)
def test_any_name_and_password_arrive_intact(user: str, password: bytes) -> None:
    expected = (user.encode(), password)
    outcome = run(lambda p: literal_aware_login(p, expected), user=user, password=password)
    assert outcome.verdict is Verdict.OK
