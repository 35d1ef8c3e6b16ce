"""The protocol state machine, fed bytes directly (no sockets)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from saslauth import authfields, wire
from saslauth.errors import LocalProtocolError, RemoteProtocolError
from saslauth.events import (
    AuthRequest,
    Cancel,
    Challenge,
    ClientEvent,
    Continue,
    Fail,
    Ok,
    Rejected,
)
from saslauth.protocol import Handshake, RequestState, ServerConnection

MECHS = [("PLAIN", ["plaintext"]), ("LOGIN", ["plaintext"])]
GOOD = "AGFsaWNlAHNlY3JldA=="


def ready(minor: int = 0) -> ServerConnection:
    conn = ServerConnection(MECHS)
    conn.receive_data(b"VERSION\t1\t%d\nCPID\t4242\n" % minor)
    assert conn.next_event() is None
    assert conn.handshake is Handshake.READY
    return conn


def feed(conn: ServerConnection, *lines: str) -> list[ClientEvent]:
    conn.receive_data("".join(line + "\n" for line in lines).encode())
    events: list[ClientEvent] = []
    while (event := conn.next_event()) is not None:
        events.append(event)
    return events


def test_greeting_is_dovecot_23_shape() -> None:
    conn = ServerConnection(MECHS)
    lines = conn.greeting(123, 7, "ab" * 16).decode().split("\n")
    assert lines == [
        "VERSION\t1\t2",
        "MECH\tPLAIN\tplaintext",
        "MECH\tLOGIN\tplaintext",
        "SPID\t123",
        "CUID\t7",
        "COOKIE\t" + "ab" * 16,
        "DONE",
        "",
    ]


@pytest.mark.parametrize(
    "data",
    [
        b"AUTH\t1\tPLAIN\tservice=smtp\n",  # before VERSION
        b"VERSION\t2\t0\nCPID\t1\n",
        b"VERSION\t1\t2\tfoo\n",
        b"VERSION\t1\tx\n",
        b"VERSION\t1\t2\nCPID\t0\n",
        b"VERSION\t1\t2\nCPID\tabc\n",
        b"VERSION\t1\t2\nAUTH\t1\tPLAIN\tservice=smtp\n",  # no CPID
        b"VERSION\t1\t2\nCPID\t1\nVERSION\t1\t2\n",  # second VERSION
        b"VERSION\t1\t2\nCPID\t1\nCPID\t1\n",
        b"VERSION\t1\t2\nCPID\t1\n\n",  # empty line
        b"VERSION\t1\t2\nCPID\t1\nFOO\tbar\n",
        b"VERSION\t1\t2\nCPID\t1\nauth\t1\tPLAIN\tservice=smtp\n",  # commands are case-sensitive
    ],
)
def test_handshake_and_command_violations_close(data: bytes) -> None:
    conn = ServerConnection(MECHS)
    conn.receive_data(data)

    def drain() -> None:
        while conn.next_event() is not None:
            pass

    with pytest.raises(RemoteProtocolError):
        drain()


@pytest.mark.parametrize(
    "line",
    [
        "AUTH\t1",
        "AUTH\t0\tPLAIN\tservice=smtp",
        "AUTH\tabc\tPLAIN\tservice=smtp",
        "AUTH\t+1\tPLAIN\tservice=smtp",
        "AUTH\t 1\tPLAIN\tservice=smtp",
        "AUTH\t4294967296\tLOGIN\tservice=smtp",
        # past int()'s 4300-digit limit
        pytest.param("AUTH\t" + "1" * 5000 + "\tPLAIN\tservice=smtp", id="AUTH-huge-id"),
        pytest.param("AUTH\t" + "1" * 5000 + "\tPLAIN\tservice=s\tresp=AA==", id="AUTH-huge-id2"),
        "AUTH\t1\tDIGEST-MD5\tservice=smtp",
        "AUTH\t1\tPLAIN\tresp=" + GOOD,  # no service
        "AUTH\t1\tPLAIN\tservice=smtp\tresp=" + GOOD + "\tsecured",  # field after resp
        "CONT\t1",
        "CONT\tx\tAAAA",
        pytest.param("CONT\t" + "9" * 5000 + "\tAAAA", id="CONT-huge-id"),
        "CANCEL\tx",
        pytest.param("CANCEL\t" + "9" * 5000, id="CANCEL-huge-id"),
        "CANCEL\t1\textra",
        "CANCEL",
    ],
)
def test_malformed_requests_close(line: str) -> None:
    with pytest.raises(RemoteProtocolError):
        feed(ready(), line)


def test_auth_parses_postfix_request() -> None:
    (event,) = feed(
        ready(),
        "AUTH\t1\tplain\tservice=smtp\tnologin\tlip=127.0.0.1\trip=192.0.2.7\tsecured\tresp="
        + GOOD,
    )
    assert isinstance(event, AuthRequest)
    assert event.mechanism == "PLAIN"
    assert (event.service, event.lip, event.rip, event.secured) == (
        "smtp",
        "127.0.0.1",
        "192.0.2.7",
        True,
    )
    assert event.initial == b"\0alice\0secret"


def test_leading_zeros_and_max_id() -> None:
    conn = ready()
    (a,) = feed(conn, "AUTH\t007\tLOGIN\tservice=smtp")
    (b,) = feed(conn, "AUTH\t4294967295\tLOGIN\tservice=smtp")
    # str_to_uint32 takes any number of leading zeros, more than int() reads by default
    zeros = "0" * 5000
    (c,) = feed(conn, f"AUTH\t{zeros}9\tLOGIN\tservice=smtp\tlport={zeros}25")
    assert isinstance(a, AuthRequest) and a.id == 7
    assert isinstance(b, AuthRequest) and b.id == 4294967295
    assert isinstance(c, AuthRequest) and (c.id, c.lport) == (9, 25)
    assert conn.send(Challenge(7, b"Username:")) == b"CONT\t7\tVXNlcm5hbWU6\n"


def test_unparsable_addresses_and_unknown_params_are_ignored() -> None:
    (event,) = feed(
        ready(),
        "AUTH\t1\tPLAIN\tfoo=bar\tnologin\tbaz\tservice=imap\tvalid-client-cert\tsecured=tls"
        "\tlocal_name=mx.example\tsession=abc\trip=not-an-ip\tlip=\tlport=99999"
        "\trport=" + "9" * 5000 + "\tresp=" + GOOD,
    )
    assert isinstance(event, AuthRequest)
    assert (event.rip, event.lip, event.lport, event.service) == (None, None, None, "imap")
    assert event.rport is None
    assert event.valid_client_cert and event.secured


def test_escaped_parameter_name() -> None:
    (event,) = feed(ready(), "AUTH\t1\tPLAIN\tser\x01vice=smtp\tresp=" + GOOD)
    assert isinstance(event, AuthRequest) and event.service == "smtp"


@pytest.mark.parametrize(
    ("minor", "resp", "initial"),
    [
        (0, "\tresp=", None),  # Exim shape: empty resp means none for minor < 2
        (1, "\tresp", None),
        (2, "\tresp=", b""),
        (2, "\tresp", b""),
        (0, "\tresp==", b""),
        (2, "\tresp==", b""),
        (0, "", None),
    ],
)
def test_initial_response_rules(minor: int, resp: str, initial: bytes | None) -> None:
    (event,) = feed(ready(minor), "AUTH\t1\tPLAIN\tservice=smtp" + resp)
    assert isinstance(event, AuthRequest)
    assert event.initial == initial


@pytest.mark.parametrize("resp", ["!!!!", "AGFsaWNlAHNlY3JldA", "YWxpY2U=YQ=="])
def test_bad_initial_base64_is_rejected_at_once(resp: str) -> None:
    conn = ready()
    (event,) = feed(conn, "AUTH\t1\tPLAIN\tservice=smtp\tresp=" + resp)
    assert event == Rejected(1, "Invalid base64 data in initial response", "invalid_base64")
    assert conn.reject(event) == (
        b"FAIL\t1\tcode=invalid_base64\treason=Invalid base64 data in initial response\n"
    )
    assert 1 not in conn.requests


def test_cont_rules() -> None:
    conn = ready()
    assert feed(conn, "CONT\t55\tAAAA") == [Rejected(55, "Authentication request timed out")]
    feed(conn, "AUTH\t1\tPLAIN\tservice=smtp")
    # the server has not asked yet: unexpected, and the request is dropped
    assert feed(conn, "CONT\t1\t" + GOOD) == [Rejected(1, "Unexpected continuation", aborted=True)]
    assert 1 not in conn.requests
    feed(conn, "AUTH\t2\tPLAIN\tservice=smtp")
    conn.send(Challenge(2, b""))
    assert feed(conn, "CONT\t2\t" + GOOD) == [Continue(2, b"\0alice\0secret")]
    conn.send(Challenge(2, b""))
    assert feed(conn, "CONT\t2\t=") == [
        Rejected(2, "Invalid base64 data in continued response", "invalid_base64", aborted=True)
    ]
    feed(conn, "AUTH\t3\tPLAIN\tservice=smtp")
    conn.send(Challenge(3, b""))
    assert feed(conn, "CONT\t3\t") == [Continue(3, b"")]


def test_cont_data_is_taken_verbatim_with_tabs_as_whitespace() -> None:
    conn = ready()
    feed(conn, "AUTH\t1\tPLAIN\tservice=smtp")
    conn.send(Challenge(1, b""))
    assert feed(conn, "CONT\t1\tAGFsaWNl\tAHNlY3JldA==") == [Continue(1, b"\0alice\0secret")]


def test_duplicate_active_id_closes() -> None:
    conn = ready()
    feed(conn, "AUTH\t9\tLOGIN\tservice=smtp")
    with pytest.raises(RemoteProtocolError):
        feed(conn, "AUTH\t9\tLOGIN\tservice=smtp")


def test_id_reuse_after_reply_is_fine() -> None:
    conn = ready()
    feed(conn, "AUTH\t1\tPLAIN\tservice=smtp\tresp=" + GOOD)
    assert conn.send(Ok(1, "alice")) == b"OK\t1\tuser=alice\n"
    (event,) = feed(conn, "AUTH\t1\tPLAIN\tservice=smtp\tresp=" + GOOD)
    assert isinstance(event, AuthRequest)


def test_cancel() -> None:
    conn = ready()
    feed(conn, "AUTH\t1\tLOGIN\tservice=smtp")
    conn.send(Challenge(1, b"Username:"))
    assert feed(conn, "CANCEL\t1") == [Cancel(1)]
    assert feed(conn, "CONT\t1\tYWxpY2U=") == [Rejected(1, "Authentication request timed out")]
    assert feed(conn, "CANCEL\t999") == []


def test_replies_escape_and_order() -> None:
    conn = ready()
    feed(conn, "AUTH\t1\tPLAIN\tservice=smtp", "AUTH\t2\tPLAIN\tservice=smtp")
    assert conn.send(Ok(1, "a\tb", (("original_user", "A\tB"),))) == (
        b"OK\t1\tuser=a\x01tb\toriginal_user=A\x01tB\n"
    )
    assert conn.send(Fail(2, (("user", ""), ("nodelay", None), ("code", "temp_fail")))) == (
        b"FAIL\t2\tuser=\tnodelay\tcode=temp_fail\n"
    )


def test_never_answer_twice() -> None:
    conn = ready()
    feed(conn, "AUTH\t1\tPLAIN\tservice=smtp\tresp=" + GOOD)
    conn.send(Ok(1, "alice"))
    with pytest.raises(LocalProtocolError):
        conn.send(Fail(1))


def test_line_limits() -> None:
    conn = ready()
    conn.receive_data(b"AUTH\t1\tPLAIN\tservice=smtp\tx=" + b"a" * (16383 - 28) + b"\n")
    event = conn.next_event()
    assert isinstance(event, AuthRequest)
    conn = ready()
    conn.receive_data(b"x" * 16384)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    conn = ready()
    conn.receive_data(b"AUTH\t1\tPLAIN\tservice=smtp\tx=" + b"a" * (16384 - 28) + b"\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_crlf_and_nul_truncation() -> None:
    conn = ServerConnection(MECHS)
    conn.receive_data(
        b"VERSION\t1\t0\r\nCPID\t1\r\nAUTH\t1\tLOGIN\tservice=smtp\x00junk\tresp=!!!\r\n"
    )
    event = conn.next_event()
    assert isinstance(event, AuthRequest) and event.initial is None


def test_pipelined_in_one_write() -> None:
    conn = ServerConnection(MECHS)
    conn.receive_data(
        (
            "VERSION\t1\t0\nCPID\t1\n"
            + "".join(f"AUTH\t{i}\tPLAIN\tservice=smtp\tresp={GOOD}\n" for i in range(1, 7))
        ).encode()
    )
    ids = []
    while (event := conn.next_event()) is not None:
        assert isinstance(event, AuthRequest)
        ids.append(event.id)
    assert ids == [1, 2, 3, 4, 5, 6]


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=80), max_size=8))
def test_fuzz_only_events_or_remote_errors(chunks: list[bytes]) -> None:
    conn = ready()
    try:
        for chunk in chunks:
            conn.receive_data(chunk)
            while (event := conn.next_event()) is not None:
                if isinstance(event, AuthRequest):
                    conn.send(Challenge(event.id, b""))
    except RemoteProtocolError:
        pass


@settings(max_examples=300)
@given(
    st.lists(
        st.sampled_from(
            [
                "AUTH\t1\tPLAIN\tservice=smtp",
                "AUTH\t2\tLOGIN\tservice=smtp\tresp=YWxpY2U=",
                "CONT\t1\t" + GOOD,
                "CONT\t2\tc2VjcmV0",
                "CONT\t3\t@@",
                "CANCEL\t1",
                "CANCEL\t2",
            ]
        ),
        max_size=12,
    ),
    st.lists(st.booleans(), max_size=12),
)
def test_fuzz_request_table_stays_consistent(lines: list[str], answers: list[bool]) -> None:
    conn = ready()
    for line, answer in zip(lines, answers + [False] * len(lines), strict=False):
        try:
            events = feed(conn, line)
        except RemoteProtocolError:
            return
        for event in events:
            if isinstance(event, AuthRequest | Continue):
                assert event.id in conn.requests
                conn.send(Challenge(event.id, b"") if answer else Ok(event.id, "u"))
            elif isinstance(event, Rejected | Cancel):
                assert event.id not in conn.requests


def test_lines_dripped_one_byte_at_a_time() -> None:
    conn = ready()
    data = (
        "AUTH\t1\tPLAIN\tservice=smtp\trip=::ffff:10.0.0.1\tresp=" + GOOD + "\r\n"
        "AUTH\t2\tLOGIN\tservice=smtp\tlip=10.0.0.2\n"
    ).encode()
    events: list[ClientEvent] = []
    for i in range(len(data)):
        conn.receive_data(data[i : i + 1])
        while (event := conn.next_event()) is not None:
            events.append(event)
    assert [type(e) for e in events] == [AuthRequest, AuthRequest]
    first, second = events
    assert isinstance(first, AuthRequest) and isinstance(second, AuthRequest)
    assert (first.id, first.initial, first.rip) == (1, b"\x00alice\x00secret", "::ffff:a00:1")
    assert (second.id, second.lip, second.initial) == (2, "10.0.0.2", None)


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("10.1.2.3", "10.1.2.3"),
        ("010.1.2.3", None),  # ipaddress refuses leading zeros (ambiguous octal)
        ("2001:DB8::0:1", "2001:db8::1"),
        ("unknown", None),
        ("", None),
        ("10.1.2.3\u00e9", None),
    ],
)
def test_addresses_are_normalised_and_remembered(given: str, normal: str | None) -> None:
    for _ in range(2):  # the second time from the memo
        (event,) = feed(ready(), f"AUTH\t1\tPLAIN\tservice=smtp\trip={given}\tlip={given}")
        assert isinstance(event, AuthRequest) and event.rip == normal and event.lip == normal


def _outcome(call: Callable[[], object]) -> object:
    """What a parse gave: its event (compared by value) or the error's type and text."""
    try:
        return call()
    except RemoteProtocolError as exc:
        return ("closed", str(exc))


def _buffered(conn: ServerConnection, data: bytes) -> object:
    conn.receive_data(data)
    return conn.next_event()


_AUTH_FIELDS = st.sampled_from(
    [
        b"service=smtp",
        b"service=",
        b"lip=127.0.0.1",
        b"rip=10.0.0.1",
        b"rip=::ffff:10.0.0.1",
        b"rip=unknown",
        b"lport=25",
        b"rport=70000",
        b"secured",
        b"secured=tls",
        b"nologin",
        b"resp",
        b"resp=",
        b"resp==",
        b"resp=" + GOOD.encode(),
        b"resp=@@",
        b"x\x01ty=1",
        b"session=abc\r",
        b"a=b\x00c",
        b"",
    ]
)


@settings(max_examples=500)
@given(
    st.sampled_from([b"AUTH", b"AUTHX", b"auth"]),
    st.sampled_from([b"1", b"7", b"0", b"x", b"4294967296", b"01"]),
    st.sampled_from([b"PLAIN", b"plain", b"LOGIN", b"CRAM-MD5"]),
    st.lists(_AUTH_FIELDS, max_size=7),
    st.sampled_from([b"\n", b"\r\n", b"\n\n", b"\nAUTH\t9\tPLAIN\tservice=smtp\n", b""]),
    st.booleans(),
)
def test_auth_line_is_the_buffered_parse(
    command: bytes, rid: bytes, mech: bytes, fields: list[bytes], end: bytes, busy: bool
) -> None:
    """auth_line(data) gives what receive_data + next_event give, or declines (None) and then
    has consumed nothing; the request table ends up the same either way."""
    data = b"\t".join([command, rid, mech, *fields]) + end
    quick, slow = ready(), ready()
    for conn in (quick, slow):
        if busy:  # id 7 is already active
            feed(conn, "AUTH\t7\tLOGIN\tservice=smtp")
    taken = _outcome(lambda: quick.auth_line(data))
    expected = _outcome(lambda: _buffered(slow, data))
    if taken is None:  # declined: the general path must still see all of it
        taken = _outcome(lambda: _buffered(quick, data))
    else:
        assert b"\n" in data and data.index(b"\n") == len(data) - 1 and b"\r" not in data
    assert taken == expected
    assert quick.requests == slow.requests


def test_auth_line_declines_with_input_buffered() -> None:
    conn = ready()
    conn.receive_data(b"AUTH\t1\tPL")
    assert conn.auth_line(b"AUTH\t2\tPLAIN\tservice=smtp\n") is None
    conn.receive_data(b"AIN\tservice=smtp\n")
    event = conn.next_event()
    assert isinstance(event, AuthRequest) and event.id == 1


_QUICK_FIELDS = st.one_of(
    _AUTH_FIELDS,
    st.sampled_from(
        [
            b"service",
            b"lip",
            b"rip=",
            b"service=imap",
            b"service=sm\x01ttp",
            b"ser\x01vice=smtp",
            b"service=s\xffmtp",
            b"lip=::1",
            b"rip=192.0.2.007",
            b"secured=",
            b"resp= " + GOOD.encode(),
            b"resp=AA==",
            b"resp= ",
            b"=x",
        ]
    ),
)


@settings(max_examples=1000)
@example(b"AUTH", b"1", b"PLAIN", [b"service", b"resp=" + GOOD.encode()], b"\n", False, 0)
@example(b"AUTH", b"1", b"PLAIN", [b"service=smtp", b"service", b"resp=AA=="], b"\n", False, 0)
@example(b"AUTH", b"1", b"PLAIN", [b"service=smtp", b"rip", b"resp=AA=="], b"\n", False, 0)
@example(b"AUTH", b"7", b"PLAIN", [b"service=smtp", b"resp=AA=="], b"\n", True, 2)
@given(
    st.sampled_from([b"AUTH", b"auth"]),
    st.sampled_from([b"1", b"7", b"0", b"x", b"4294967295", b"4294967296", b"01", b"\xd9\xa3"]),
    st.sampled_from([b"PLAIN", b"plain", b"LOGIN", b"CRAM-MD5"]),
    st.lists(_QUICK_FIELDS, max_size=7),
    st.sampled_from([b"\n", b"\r\n", b"\n\n", b"\nCANCEL\t1\n", b""]),
    st.booleans(),
    st.sampled_from([0, 2]),
)
def test_quick_auth_is_the_buffered_parse(
    command: bytes,
    rid: bytes,
    mech: bytes,
    fields: list[bytes],
    end: bytes,
    busy: bool,
    minor: int,
) -> None:
    """quick_auth(data) finds exactly what the AuthRequest of receive_data + next_event holds,
    or declines (None) having consumed nothing; the request table ends up the same."""
    data = b"\t".join([command, rid, mech, *fields]) + end
    quick, slow = ready(minor), ready(minor)
    for conn in (quick, slow):
        if busy:  # id 7 is already active
            feed(conn, "AUTH\t7\tLOGIN\tservice=smtp")
    found = _outcome(lambda: quick.quick_auth(data, {"PLAIN"}))
    expected = _outcome(lambda: _buffered(slow, data))
    if found is None:  # declined: the general path must still see all of it
        assert _outcome(lambda: _buffered(quick, data)) == expected
    else:
        assert isinstance(found, tuple) and isinstance(expected, AuthRequest)
        request_id, mechanism, service, initial, lip, rip, secured = found
        assert mechanism == "PLAIN" == expected.mechanism
        assert service.decode("utf-8", "surrogateescape") == expected.service
        assert (request_id, initial, lip, rip, secured) == (
            expected.id,
            expected.initial,
            expected.lip,
            expected.rip,
            expected.secured,
        )
        assert expected.initial is not None  # only requests with an initial response
    assert quick.requests == slow.requests


_ADDRESSES = [b"127.0.0.1", b"", b"::1", b"unknown", b"127.000.0.1", b"::FFFF:1.2.3.4", b"\xff"]


_LONG = b"s" * wire.MAX_LINE  # a service that makes the line too long
END = b"\n"
_LONG_IDS = [b"9" * 5000, b"0" * 5000 + b"7"]  # more digits than int() reads by default


@settings(max_examples=1500, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(b"1", b"PLAIN", b"smtp", b"127.0.0.1", b"10.0.0.1", b"\tsecured", GOOD.encode(), 0, END)
@example(b"7", b"PLAIN", b"smtp", b"", b"", b"", GOOD.encode(), True, END)
@example(b"1", b"PLAIN", _LONG[:-100], b"", b"", b"", GOOD.encode(), False, b"\n")  # just fits
@example(b"1", b"PLAIN", _LONG, b"", b"", b"", GOOD.encode(), False, b"\n")
@given(
    st.sampled_from(
        [b"1", b"7", b"0", b"01", b"4294967295", b"4294967296", b"00000000001", b"x", *_LONG_IDS]
    ),
    st.sampled_from([b"PLAIN", b"plain", b"LOGIN", b"CRAM-MD5", b"", b"PL\x01AIN"]),
    st.sampled_from(
        [b"smtp", b"", b"s=x", b"s\xffp", b"resp", b"smtp ", b"s\x01p", b"s\x00p", b"s\rp"]
    ),
    st.sampled_from(_ADDRESSES),
    st.sampled_from(_ADDRESSES),
    st.sampled_from([b"", b"\tsecured", b"\tsecured=", b"\tsecured\tsecured", b"\tnologin"]),
    st.sampled_from(
        [GOOD.encode(), b"", b"=", b"AA==", b"A", b"AA=A", b" AA==", b"A A==", b"AA\tx", b"AA\x01"]
    ),
    st.booleans(),
    st.sampled_from([b"\n", b"\r\n", b"\n\n", b"\nCANCEL\t1\n", b"", b"\x00\n"]),
)
def test_quick_auth_reads_postfix_lines_as_field_by_field(
    monkeypatch: pytest.MonkeyPatch,
    rid: bytes,
    mech: bytes,
    service: bytes,
    lip: bytes,
    rip: bytes,
    secured: bytes,
    resp: bytes,
    busy: bool,
    end: bytes,
) -> None:
    """Reads in Postfix's field order (matched whole) give what the field-by-field reading
    gives, and what receive_data + next_event give; the request tables end the same.  Also
    reads that only look like one: a CR, NUL or escape byte in a field, a second line, no LF,
    a line too long."""
    data = b"AUTH\t%s\t%s\tservice=%s\tnologin\tlip=%s\trip=%s%s\tresp=%s%s" % (
        rid, mech, service, lip, rip, secured, resp, end
    )
    matched, by_field, slow = ready(), ready(), ready()
    for conn in (matched, by_field, slow):
        if busy:  # id 7 is already active
            feed(conn, "AUTH\t7\tLOGIN\tservice=smtp")
    found = _outcome(lambda: matched.quick_auth(data, {"PLAIN"}))
    with monkeypatch.context() as patch:
        patch.setattr(authfields, "POSTFIX_AUTH", re.compile(rb"(?!)"))  # matches nothing
        assert _outcome(lambda: by_field.quick_auth(data, {"PLAIN"})) == found
    assert matched.requests == by_field.requests
    expected = _outcome(lambda: _buffered(slow, data))
    if found is None:
        assert _outcome(lambda: _buffered(matched, data)) == expected
    else:
        assert isinstance(found, tuple) and isinstance(expected, AuthRequest)
        assert found[0] == expected.id and found[3] == expected.initial
        assert found[4:] == (expected.lip, expected.rip, expected.secured)
        assert found[2].decode("utf-8", "surrogateescape") == expected.service
    assert matched.requests == slow.requests


def test_quick_auth_takes_the_usual_postfix_line() -> None:
    """The test above must not pass by declining everything: Postfix's line is taken."""
    conn = ready()
    line = f"AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=10.0.0.1\tresp={GOOD}\n"
    found = conn.quick_auth(line.encode(), {"PLAIN", "LOGIN"})
    assert found == (1, "PLAIN", b"smtp", b"\0alice\0secret", "127.0.0.1", "10.0.0.1", False)
    assert conn.requests == {1: RequestState.BUSY}
    assert conn.quick_auth(line.replace("\t1\t", "\t2\t").encode(), {"LOGIN"}) is None
    assert conn.quick_auth(line.replace("\t1\t", "\t3\t").encode() + b"\n", {"PLAIN"}) is None
