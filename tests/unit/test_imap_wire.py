"""The IMAP wire helpers: argument encoding (quoted/literal) and the bounded response parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from saslauth.passdb.imap_wire import (
    MAX_LINE,
    MAX_LITERAL,
    MAX_RESPONSE,
    ImapProtocolError,
    Response,
    ResponseReader,
    command,
    needs_literal,
    parse,
    printable,
    quoted,
)

# ---- a reference decoder for what command() sends (written from RFC 3501 section 4.3) -----------


def decode_command(chunks: list[bytes]) -> tuple[bytes, bytes, list[bytes]]:
    """Decode ``tag verb astring*`` the way a server would, checking the literal handshakes."""
    assert all(chunk.endswith(b"\r\n") for chunk in chunks)
    data = b"".join(chunks)
    boundaries = {sum(len(c) for c in chunks[: i + 1]) for i in range(len(chunks) - 1)}
    tag, verb = data.split(b" ", 2)[:2]
    pos = len(tag) + 1 + len(verb)
    args: list[bytes] = []
    while data[pos : pos + 2] != b"\r\n":
        assert data[pos : pos + 1] == b" "
        pos += 1
        if data[pos : pos + 1] == b'"':
            pos += 1
            value = bytearray()
            while data[pos : pos + 1] != b'"':
                char = data[pos : pos + 1]
                if char == b"\\":
                    pos += 1
                    char = data[pos : pos + 1]
                    assert char in (b'"', b"\\"), "only quoted-specials may be escaped"
                assert char not in (b"\r", b"\n", b"") and ord(char) < 0x80
                value += char
                pos += 1
            args.append(bytes(value))
            pos += 1
        else:
            assert data[pos : pos + 1] == b"{"
            end = data.index(b"}\r\n", pos)
            size = int(data[pos + 1 : end])
            pos = end + 3
            assert pos in boundaries, "a literal's bytes must wait for the continuation"
            args.append(data[pos : pos + size])
            pos += size
    assert pos + 2 == len(data)
    return tag, verb, args


no_nul = st.binary(max_size=300).filter(lambda b: b"\0" not in b)


@given(no_nul, no_nul)
def test_command_round_trips_through_a_server_side_decoder(user: bytes, password: bytes) -> None:
    chunks = command(b"a7", b"LOGIN", user, password)
    assert decode_command(chunks) == (b"a7", b"LOGIN", [user, password])
    literals = sum(needs_literal(arg) for arg in (user, password))
    assert len(chunks) == 1 + literals


@given(st.binary(max_size=200))
def test_needs_literal_exactly_for_8bit_cr_lf_nul(data: bytes) -> None:
    expected = any(b >= 0x80 or b in (0, 10, 13) for b in data)
    assert needs_literal(data) is expected


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (b"secret", b'"secret"'),
        (b"", b'""'),
        (b"a b", b'"a b"'),
        (b'say "hi"', b'"say \\"hi\\""'),
        (b"back\\slash", b'"back\\\\slash"'),
        (b"{5}", b'"{5}"'),
        (b"%*()]", b'"%*()]"'),
    ],
)
def test_quoted_examples(value: bytes, wire: bytes) -> None:
    assert not needs_literal(value)
    assert quoted(value) == wire
    assert command(b"a1", b"LOGIN", b"u", value) == [b'a1 LOGIN "u" ' + wire + b"\r\n"]


def test_non_ascii_and_newlines_become_literals() -> None:
    password = "pässwörd".encode()
    assert command(b"a2", b"LOGIN", b"bob", password) == [
        b'a2 LOGIN "bob" {10}\r\n',
        password + b"\r\n",
    ]
    assert command(b"a3", b"LOGIN", "jürgen".encode(), b"x\r\ny") == [
        b"a3 LOGIN {7}\r\n",
        "jürgen".encode() + b" {4}\r\n",
        b"x\r\ny\r\n",
    ]


def test_nul_is_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        command(b"a1", b"LOGIN", b"u", b"a\0b")


# ---- responses ----------------------------------------------------------------------------------


def feed_all(data: bytes) -> list[Response]:
    reader = ResponseReader()
    out = reader.feed(data)
    assert not reader.pending
    return out


def test_parse_statuses_codes_and_capabilities() -> None:
    greeting = parse(b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGINDISABLED AUTH=PLAIN] ready")
    assert (greeting.tag, greeting.kind, greeting.text) == (b"*", b"OK", b"ready")
    assert greeting.capabilities == frozenset(
        {"IMAP4REV1", "SASL-IR", "LOGINDISABLED", "AUTH=PLAIN"}
    )
    no = parse(b"a2 no [AUTHENTICATIONFAILED] Authentication failed.")
    assert (no.tag, no.kind, no.code_name, no.capabilities) == (
        b"a2",
        b"NO",
        b"AUTHENTICATIONFAILED",
        None,
    )
    caps = parse(b"* CAPABILITY IMAP4rev1 starttls")
    assert caps.capabilities == frozenset({"IMAP4REV1", "STARTTLS"})
    assert parse(b"+ ").tag == b"+" and parse(b"+").text == b""
    assert parse(b"* 3 EXISTS").kind == b"3"
    assert parse(b"a1 OK").text == b""


@pytest.mark.parametrize(
    "line",
    [b"", b"garbage", b"\xff\xfe OK", b"a1 FETCH 1", b"a1 ", b"* ", b"a1 OK [CAPABILITY x"],
)
def test_malformed_lines(line: bytes) -> None:
    with pytest.raises(ImapProtocolError):
        parse(line)


def test_untagged_literal_is_read_by_length() -> None:
    data = b'* ID ("name" {9}\r\nDo\r\nvecot)\r\n* 2 EXISTS\r\na1 OK done\r\n'
    responses = feed_all(data)
    assert [r.kind for r in responses] == [b"ID", b"2", b"OK"]
    assert b"Do\r\nvecot" in responses[0].text
    empty = feed_all(b"* X {0}\r\n rest\r\n")
    assert [r.kind for r in empty] == [b"X"]


def test_brace_at_the_end_of_status_text_is_not_a_literal() -> None:
    responses = feed_all(b"a1 NO try {5}\r\n* OK also {3}\r\n+ go {2}\r\n")
    assert [(r.tag, r.kind) for r in responses] == [(b"a1", b"NO"), (b"*", b"OK"), (b"+", b"")]


def test_bare_lf_is_accepted() -> None:
    assert feed_all(b"* OK hi\na1 OK x\n")[1].tag == b"a1"


def is_pending(reader: ResponseReader) -> bool:
    return reader.pending  # a call, so mypy does not narrow the property between asserts


def test_pending_reports_partial_input() -> None:
    reader = ResponseReader()
    assert reader.feed(b"a1 OK begin") == [] and is_pending(reader)
    assert reader.feed(b" TLS\r\n") == [Response(b"a1", b"OK", b"", b"begin TLS")]
    assert not is_pending(reader)
    assert reader.feed(b"* X {4}\r\nab") == [] and is_pending(reader)


def test_limits() -> None:
    with pytest.raises(ImapProtocolError, match="line longer"):
        ResponseReader().feed(b"* OK " + b"x" * MAX_LINE)
    with pytest.raises(ImapProtocolError, match="line longer"):
        ResponseReader().feed(b"* OK " + b"x" * MAX_LINE + b"\r\n")
    assert ResponseReader().feed(b"* OK " + b"x" * (MAX_LINE - 6) + b"\r\n")
    with pytest.raises(ImapProtocolError, match="literal longer"):
        ResponseReader().feed(b"* X {%d}\r\n" % (MAX_LITERAL + 1))
    many = (b"* X {%d}\r\n" % MAX_LITERAL + b"y" * MAX_LITERAL) * (MAX_RESPONSE // MAX_LITERAL + 1)
    with pytest.raises(ImapProtocolError, match="response longer"):
        ResponseReader().feed(many)


lines = st.sampled_from(
    [
        b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] Dovecot ready.",
        b"* CAPABILITY IMAP4rev1 LITERAL+ SASL-IR",
        b"* BYE Logging out",
        b"* 12 EXISTS",
        b"* ID {5}\r\nab\r\nc)",
        b"a1 OK [CAPABILITY IMAP4rev1] Logged in",
        b"a2 NO [AUTHENTICATIONFAILED] Authentication failed.",
        b"a3 BAD Error in IMAP command",
        b"+ ",
        b"+ {5}",
    ]
)


@given(st.lists(lines, max_size=8), st.lists(st.integers(min_value=1, max_value=50), max_size=20))
def test_any_split_of_the_stream_gives_the_same_responses(
    chosen: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(line + b"\r\n" for line in chosen)
    expected = feed_all(stream)
    assert len(expected) == len(chosen)
    reader, got, pos = ResponseReader(), [], 0
    for size in [*cuts, len(stream)]:
        got += reader.feed(stream[pos : pos + size])
        pos += size
    assert got == expected and not reader.pending


@given(st.lists(st.binary(max_size=64), max_size=10))
def test_garbage_only_ever_raises_imap_protocol_error(chunks: list[bytes]) -> None:
    reader = ResponseReader()
    try:
        for chunk in chunks:
            for response in reader.feed(chunk):
                assert isinstance(response, Response)
    except ImapProtocolError:
        pass


def test_printable_strips_controls_and_cuts() -> None:
    assert printable(b"ok\x1b[31m\r\n\xff") == "ok?[31m??\ufffd"
    assert printable(b"x" * 500, limit=10) == "x" * 10 + "..."
