"""Self-tests of the server fixtures and the raw auth client (tests/fixtures/).

They also pin down how the real Dovecot 2.3 answers, so the reference numbers the
saslauth tests rely on are re-checked whenever this file runs.
"""

from __future__ import annotations

import imaplib
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.authclient import (
    AuthClient,
    ConnectionClosed,
    Pause,
    Read,
    Send,
    Step,
    UnexpectedData,
    b64,
    default_normalise,
    parse_address,
    plain_b64,
    run_transcript,
)
from tests.fixtures.dovecot import (
    DovecotAuth,
    require_dovecot,
    start_dovecot_auth,
    start_dovecot_imap,
    write_passwd_file,
)
from tests.fixtures.ports import free_tcp_port, is_listening, public_tmpdir
from tests.fixtures.postfix import (
    Postfix,
    parse_swaks,
    require_postfix,
    start_postfix,
    swaks_auth,
    swaks_send,
)
from tests.fixtures.tlsca import make_test_ca, openssl_skip_reason

GOOD = plain_b64("", "alice", "secret")
WRONG = plain_b64("", "alice", "wrong")


def auth_line(req_id: int, resp: str, *params: str, mech: str = "PLAIN") -> str:
    return "\t".join(["AUTH", str(req_id), mech, "service=smtp", *params, f"resp={resp}"])


# ================================================================ pure helpers
def test_helpers_encode_like_the_reference() -> None:
    assert plain_b64("", "alice", "secret") == "AGFsaWNlAHNlY3JldA=="
    assert b64("alice") == "YWxpY2U="
    assert b64(b"") == ""
    assert parse_address("/run/x/auth") == (socket.AF_UNIX, "/run/x/auth")
    assert parse_address("127.0.0.1:12345") == (socket.AF_INET, ("127.0.0.1", 12345))
    assert parse_address("inet:127.0.0.1:1") == (socket.AF_INET, ("127.0.0.1", 1))
    assert parse_address("[::1]:25") == (socket.AF_INET6, ("::1", 25))
    with pytest.raises(ValueError, match="host:port"):
        parse_address("localhost")


def test_default_normalise() -> None:
    assert default_normalise("SPID\t123") == "SPID\t<n>"
    assert default_normalise("CUID\t7") == "CUID\t<n>"
    assert default_normalise("COOKIE\t0222968b0b428fcdc8bb2949810d60b5") == "COOKIE\t<cookie>"
    cram = b64("<1896.697170952@postoffice.example.net>")
    assert default_normalise(f"CONT\t3\t{cram}") == "CONT\t3\t<cram-md5-challenge>"
    assert default_normalise("CONT\t3\tVXNlcm5hbWU6") == "CONT\t3\tVXNlcm5hbWU6"
    assert default_normalise("OK\t1\tuser=alice") == "OK\t1\tuser=alice"


def test_parse_swaks_transcript() -> None:
    out = "\n".join(
        [
            "<-  220 mx ESMTP",
            " -> EHLO x",
            "<-  250-mx",
            "<-  250 AUTH PLAIN LOGIN",
            " -> AUTH LOGIN",
            "<-  334 VXNlcm5hbWU6",
            " -> YWxpY2U=",
            "<-  334 UGFzc3dvcmQ6",
            " -> d3Jvbmc=",
            "<** 535 5.7.8 Error: authentication failed: (reason unavailable)",
            "*** No authentication type succeeded",
        ]
    )
    r = parse_swaks(out, 28)
    assert (r.exit_code, r.auth_code, r.rcpt_code) == (28, 535, None)
    assert r.auth_reply == "535 5.7.8 Error: authentication failed: (reason unavailable)"


def test_free_port_and_public_dir() -> None:
    port = free_tcp_port()
    assert 1024 <= port <= 65535
    assert not is_listening("127.0.0.1", port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert is_listening("127.0.0.1", port)
    with public_tmpdir() as d:
        assert d.stat().st_mode & 0o777 == 0o755
        assert len(str(d)) < 40
    assert not d.exists()


def test_tls_ca(tmp_path: Path) -> None:
    if openssl_skip_reason():
        pytest.skip(openssl_skip_reason() or "")
    ca = make_test_ca(tmp_path / "ca")
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca.ca_cert), str(ca.server_cert)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    ctx = ssl.create_default_context(cafile=str(ca.ca_cert))
    ctx.load_verify_locations(cafile=str(ca.ca_cert))  # parses


# ======================================================================= Dovecot
@pytest.mark.dovecot
def test_dovecot_plain_ok_and_greeting(dovecot_auth: DovecotAuth) -> None:
    with AuthClient.connect(dovecot_auth.address) as c:
        greeting = c.handshake(minor=0)
        assert [default_normalise(x) for x in greeting] == [
            "VERSION\t1\t2",
            "MECH\tPLAIN\tplaintext",
            "MECH\tLOGIN\tplaintext",
            "SPID\t<n>",
            "CUID\t<n>",
            "COOKIE\t<cookie>",
            "DONE",
        ]
        t0 = time.monotonic()
        c.send_line(auth_line(1, GOOD, "nologin", "lip=127.0.0.1", "rip=127.0.0.1", "secured"))
        assert c.read_line(2.0) == "OK\t1\tuser=alice"
        print(f"OK after {time.monotonic() - t0:.3f}s")
        assert c.is_closed(0.2) is False


@pytest.mark.dovecot
def test_dovecot_wrong_password_fails_fast(dovecot_auth: DovecotAuth) -> None:
    with AuthClient.connect(dovecot_auth.address) as c:
        c.handshake()
        t0 = time.monotonic()
        c.send_line(auth_line(1, WRONG))
        reply = c.read_line(3.0)
        elapsed = time.monotonic() - t0
    print(f"FAIL after {elapsed:.3f}s with auth_failure_delay = 0")
    assert reply == "FAIL\t1\tuser=alice"
    assert elapsed < 1.0  # measured: 0.500 s (the failure timer's 500 ms tick)


@pytest.mark.dovecot
def test_doveadm_auth_test(dovecot_auth: DovecotAuth) -> None:
    ok = dovecot_auth.doveadm_auth_test("alice", "secret")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "passdb: alice auth succeeded" in ok.stdout
    bad = dovecot_auth.doveadm_auth_test("alice", "wrong")
    assert bad.returncode == 77, bad.stdout + bad.stderr


@pytest.mark.dovecot
def test_dovecot_penalty_is_off(dovecot_auth: DovecotAuth) -> None:
    times: list[float] = []
    with AuthClient.connect(dovecot_auth.address) as c:
        c.handshake()
        for i in range(1, 6):
            t0 = time.monotonic()
            c.send_line(auth_line(i, plain_b64("", "alice", f"wrong{i}"), "rip=192.0.2.9"))
            assert c.read_line(5.0) == f"FAIL\t{i}\tuser=alice"
            times.append(time.monotonic() - t0)
    print("failure times:", [f"{t:.3f}" for t in times])
    assert all(t < 1.5 for t in times), times
    assert "anvil-auth-penalty" not in os.listdir(dovecot_auth.base_dir)


@pytest.mark.dovecot
@pytest.mark.slow
def test_dovecot_penalty_on(tmp_path: Path, passwd_file: Path) -> None:
    require_dovecot()
    with start_dovecot_auth(tmp_path / "dv", passwd_file, penalty=True) as dv:
        times: list[float] = []
        with AuthClient.connect(dv.address) as c:
            c.handshake()
            for i in (1, 2):
                t0 = time.monotonic()
                c.send_line(auth_line(i, plain_b64("", "alice", f"wrong{i}"), "rip=192.0.2.9"))
                assert c.read_line(12.0) == f"FAIL\t{i}\tuser=alice"
                times.append(time.monotonic() - t0)
    print("failure times with penalty:", [f"{t:.3f}" for t in times])
    assert times[0] < 1.5
    assert times[1] > 3.5  # 4 s penalty wait (+ the failure timer)


@pytest.mark.dovecot
def test_dovecot_login_transcript_and_close(dovecot_auth: DovecotAuth) -> None:
    steps: list[Step] = [
        Send("AUTH\t3\tLOGIN\tservice=smtp", replies=1),
        Send(f"CONT\t3\t{b64('alice')}", replies=1),
        Send(f"CONT\t3\t{b64('secret')}", replies=1),
        Send("CONT\t55\tAAAA", replies=1),
        "FOO\tbar",
    ]
    t = run_transcript(dovecot_auth.address, steps)
    assert t.greeting[-1] == "DONE"
    assert t.lines() == [
        "CONT\t3\tVXNlcm5hbWU6",
        "CONT\t3\tUGFzc3dvcmQ6",
        "OK\t3\tuser=alice",
        "FAIL\t55\treason=Authentication request timed out",
        "<closed>",
    ]
    assert t.missing == 0
    # the same steps give the same normalised transcript on a second connection
    assert run_transcript(dovecot_auth.address, steps).lines() == t.lines()


@pytest.mark.dovecot
def test_dovecot_transcript_shuffled_failures(dovecot_auth: DovecotAuth) -> None:
    pipelined = b"".join(f"{auth_line(i, WRONG)}\n".encode() for i in range(1, 7))
    t = run_transcript(dovecot_auth.address, [pipelined, Read(6)], sort_replies=True)
    assert t.lines() == sorted(f"FAIL\t{i}\tuser=alice" for i in range(1, 7))
    assert max(t.times) < 1.5


@pytest.mark.dovecot
def test_authclient_close_detection(dovecot_auth: DovecotAuth) -> None:
    with AuthClient.connect(dovecot_auth.address) as c:
        c.handshake()
        c.send_line("AUTH\t0\tPLAIN\tservice=smtp")  # id 0 -> Dovecot closes, no reply
        assert c.is_closed(2.0) is True
        with pytest.raises(ConnectionClosed):
            c.read_line(0.1)
    with AuthClient.connect(dovecot_auth.address) as c:
        c.send_line("VERSION\t1\t0")  # the greeting arrives unasked: is_closed must complain
        with pytest.raises(UnexpectedData):
            c.is_closed(1.0)
    with AuthClient.connect(dovecot_auth.address) as c:
        c.handshake()
        assert c.read_line(0.2) is None
        t = run_transcript(dovecot_auth.address, [Pause(0.1)], settle=0.3)
        assert t.lines() == []


@pytest.mark.dovecot
def test_dovecot_inet_listener(tmp_path: Path, passwd_file: Path) -> None:
    require_dovecot()
    with start_dovecot_auth(tmp_path / "dv", passwd_file, inet=True) as dv:
        assert dv.client_inet is not None
        with AuthClient.connect(dv.client_inet) as c:
            c.handshake(minor=2)
            assert c.auth(auth_line(9, GOOD), 2.0) == "OK\t9\tuser=alice"


# Reference replies of Dovecot 2.3.19.1 for passwd-file extra fields (failure delay 0):
# (extra fields in the passwd-file, AUTH parameters, password, exact reply; {u} = user)
EXTRA_FIELD_CASES: list[tuple[str, tuple[str, ...], str, str]] = [
    ("nologin", (), "secret", "OK\t1\tuser={u}\tnologin"),
    ("nologin", (), "wrong", "FAIL\t1\tuser={u}"),
    ("nologin reason=Go away", (), "secret", "OK\t1\tuser={u}\tnologin\treason=Go\taway"),
    ("nodelay", (), "secret", "OK\t1\tuser={u}\tnodelay"),
    ("nodelay", (), "wrong", "FAIL\t1\tuser={u}"),  # delayed like any failure!
    ("user=other", (), "secret", "OK\t1\tuser=other\t\toriginal_user={u}"),  # empty field
    ("user=other", (), "wrong", "FAIL\t1\tuser=other\toriginal_user={u}"),
    ("allow_nets=10.0.0.0/8", (), "secret", "FAIL\t1\tuser={u}"),
    ("allow_nets=10.0.0.0/8", ("rip=",), "secret", "FAIL\t1\tuser={u}"),
    ("allow_nets=10.0.0.0/8", ("rip=127.0.0.1",), "secret", "FAIL\t1\tuser={u}"),
    ("allow_nets=10.0.0.0/8", ("rip=10.1.2.3",), "secret", "OK\t1\tuser={u}\t"),  # trailing TAB
    ("allow_nets=10.0.0.0/8", ("rip=10.1.2.3",), "wrong", "FAIL\t1\tuser={u}"),
    ("nodelay allow_nets=10.0.0.0/8", ("rip=127.0.0.1",), "secret", "FAIL\t1\tuser={u}"),
    ("foo=bar", (), "secret", "OK\t1\tuser={u}\tfoo=bar"),
    ("foo=bar", (), "wrong", "FAIL\t1\tuser={u}"),
]


@pytest.fixture(scope="module")
def extra_fields_dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotAuth]:
    require_dovecot()
    tmp = tmp_path_factory.mktemp("extra")
    users = {f"u{i}": ("secret", extra) for i, (extra, _, _, _) in enumerate(EXTRA_FIELD_CASES)}
    with start_dovecot_auth(tmp / "dv", write_passwd_file(tmp / "users", users)) as dv:
        yield dv


@pytest.mark.dovecot
@pytest.mark.parametrize(
    ("index", "params", "password", "expected"),
    [
        pytest.param(i, params, pw, exp, id=f"{extra}|{','.join(params)}|{pw}")
        for i, (extra, params, pw, exp) in enumerate(EXTRA_FIELD_CASES)
    ],
)
def test_dovecot_passwd_file_extra_fields(
    extra_fields_dovecot: DovecotAuth,
    index: int,
    params: tuple[str, ...],
    password: str,
    expected: str,
) -> None:
    user = f"u{index}"
    with AuthClient.connect(extra_fields_dovecot.address) as c:
        c.handshake()
        t0 = time.monotonic()
        c.send_line(auth_line(1, plain_b64("", user, password), *params))
        reply = c.read_line(3.0)
        elapsed = time.monotonic() - t0
    assert reply == expected.format(u=user)
    if expected.startswith("FAIL"):
        assert 0.05 < elapsed < 1.0, elapsed  # queued for the failure timer, even with nodelay
    else:
        assert elapsed < 0.3, elapsed


@pytest.mark.dovecot
def test_dovecot_unreadable_passwd_file_is_temp_fail(tmp_path: Path) -> None:
    require_dovecot(need_root=True)
    with public_tmpdir() as pub:
        users = write_passwd_file(pub / "users")
        users.chmod(0o600)  # root-owned: unreadable for the auth process running as dovecot
        with (
            start_dovecot_auth(tmp_path / "dv", users, auth_user="dovecot") as dv,
            AuthClient.connect(dv.address) as c,
        ):
            c.handshake()
            for i in (1, 2):
                c.send_line(auth_line(i, GOOD))
                assert c.read_line(3.0) == f"FAIL\t{i}\tuser=alice\tcode=temp_fail"
            dv.wait_log(r"passwd-file\(alice\): open\(.*\) failed: Permission denied")


@pytest.mark.dovecot
def test_dovecot_missing_passwd_file(tmp_path: Path) -> None:
    require_dovecot()
    with start_dovecot_auth(tmp_path / "dv", tmp_path / "does-not-exist") as dv:
        replies: list[str | None] = []
        with AuthClient.connect(dv.address) as c:
            c.handshake()
            for i in (1, 2, 3):
                c.send_line(auth_line(i, GOOD))
                replies.append(c.read_line(3.0))
        print("missing passwd-file:", replies)
        # The first lookup in a wall-clock second re-stats the file ("missing passwd
        # file" -> unknown user -> plain FAIL); others in that second get temp_fail.
        for i, r in enumerate(replies, 1):
            assert r in (f"FAIL\t{i}\tuser=alice", f"FAIL\t{i}\tuser=alice\tcode=temp_fail")
        dv.wait_log(r"missing passwd file: ")


@pytest.mark.dovecot
@pytest.mark.root
def test_dovecot_imap(tmp_path: Path, passwd_file: Path) -> None:
    require_dovecot(need_root=True)
    with start_dovecot_imap(tmp_path / "imap", passwd_file, tls=True) as im:
        assert im.tls_port is not None
        assert im.ca_file is not None
        plain = imaplib.IMAP4("127.0.0.1", im.port)
        assert plain.login("alice", "secret")[0] == "OK"
        plain.logout()
        ctx = ssl.create_default_context(cafile=str(im.ca_file))
        tls = imaplib.IMAP4_SSL("localhost", im.tls_port, ssl_context=ctx)
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            tls.login("alice", "wrong")
        tls.logout()
        with AuthClient.connect(str(im.client_socket)) as c:
            c.handshake()
            assert c.auth(auth_line(1, GOOD), 2.0) == "OK\t1\tuser=alice"


# ======================================================================= Postfix
@pytest.fixture(scope="module")
def postfix_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postfix]:
    """One Dovecot auth + Postfix pair for the SMTP tests of this module."""
    require_dovecot()
    require_postfix()
    tmp = tmp_path_factory.mktemp("stack")
    with (
        start_dovecot_auth(tmp / "dv", write_passwd_file(tmp / "users")) as dv,
        start_postfix(tmp / "pf", sasl_path=str(dv.client_socket)) as pf,
    ):
        yield pf


@pytest.mark.postfix
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_postfix_auth_ok(postfix_stack: Postfix, mech: str) -> None:
    mark = len(postfix_stack.maillog_text())
    r = swaks_auth(postfix_stack.smtp_port, user="alice", password="secret", mech=mech)
    assert r.auth_code == 235, r.output
    assert (r.rcpt_code, r.data_code, r.exit_code) == (250, 250, 0), r.output
    postfix_stack.wait_maillog(rf"sasl_method={mech}, sasl_username=alice", after=mark)
    postfix_stack.wait_maillog(r"discard.*status=sent", after=mark)


@pytest.mark.postfix
def test_postfix_auth_wrong_password(postfix_stack: Postfix) -> None:
    t0 = time.monotonic()
    r = swaks_auth(postfix_stack.smtp_port, user="alice", password="wrong")
    print(f"535 after {time.monotonic() - t0:.3f}s")
    assert r.auth_code == 535, r.output
    assert r.auth_reply == "535 5.7.8 Error: authentication failed: (reason unavailable)"
    assert r.exit_code == 28


@pytest.mark.postfix
def test_postfix_starttls_auth(postfix_stack: Postfix) -> None:
    r = swaks_auth(postfix_stack.smtp_port, user="alice", password="secret", tls=True)
    assert r.auth_code == 235, r.output
    assert "TLS started" in r.output
    sub = postfix_stack.submission_port
    assert sub is not None
    r = swaks_auth(sub, user="alice", password="secret", tls=True, quit_after="AUTH")
    assert r.auth_code == 235, r.output
    r = swaks_auth(sub, user="alice", password="secret", quit_after="AUTH")
    assert r.auth_code is None  # AUTH is not offered before STARTTLS on submission
    assert "Host did not advertise authentication" in r.output


@pytest.mark.postfix
def test_postfix_relay_denied_without_auth(postfix_stack: Postfix) -> None:
    r = swaks_send(postfix_stack.smtp_port)
    assert r.rcpt_code == 554, r.output
    assert r.rcpt_reply is not None
    assert "Relay access denied" in r.rcpt_reply
    local = swaks_send(postfix_stack.smtp_port, to_addr="bob@example.test")
    assert local.rcpt_code == 250, local.output


@pytest.mark.postfix
def test_postfix_fixture_function_scoped(postfix_dovecot: Postfix) -> None:
    """The conftest-registered fixture pair works and cleans up after itself."""
    r = swaks_auth(postfix_dovecot.smtp_port, user="bob", password="bobpw", quit_after="AUTH")
    assert r.auth_code == 235, r.output
    assert postfix_dovecot.rundir.exists()
