"""The sql passdb in the real daemon against real SQLite files, PostgreSQL and MariaDB servers.

One server of each kind per module (tests/fixtures/sqldb.py) and one daemon per database, with
two passdbs in a chain: a Dovecot ``password_query`` pasted unchanged (Postfix Admin's
``mailbox`` table) and a native ``:user`` query with a user rewrite and extra fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from saslauth import config, schemes
from saslauth.errors import BackendError
from saslauth.passdb import Verdict
from saslauth.passdb.sql.driver import SqlPassDB
from saslauth.usernames import DEFAULT_ALLOWED_CHARS
from saslauth.verifier import VerifyRequest
from tests.fixtures.authclient import AuthClient, plain_b64
from tests.fixtures.ports import free_tcp_port, public_tmpdir
from tests.fixtures.postfix import postfix_skip_reason, start_postfix, swaks_auth
from tests.fixtures.saslauth import Saslauth, running, start_saslauth
from tests.fixtures.sqldb import ROLE_PASSWORD, Server, database

ALICE_HASH = schemes.generate("SHA512-CRYPT", b"wonderland")
SCHEMA = (Path(__file__).parents[2] / "examples" / "sql" / "schema.sql").read_text()
DATA = f"""
CREATE TABLE mailbox (username VARCHAR(255) NOT NULL, password VARCHAR(255) NOT NULL,
                      domain VARCHAR(255) NOT NULL, active SMALLINT NOT NULL);
INSERT INTO mailbox VALUES ('alice@example.test', '{ALICE_HASH}', 'example.test', 1);
INSERT INTO mailbox VALUES ('gone@example.test', '{{PLAIN}}gonepw', 'example.test', 0);
INSERT INTO mailbox VALUES ('twin@example.test', '{{PLAIN}}a', 'example.test', 1);
INSERT INTO mailbox VALUES ('twin@example.test', '{{PLAIN}}b', 'example.test', 1);
ALTER TABLE users ADD login VARCHAR(255);
INSERT INTO users (username, login, password) VALUES ('bob@example.test', 'bob@example.test',
  '{{PLAIN}}bobpw');
INSERT INTO users (username, login, password) VALUES ('carol@example.test',
  'c.alias@example.test', '{{PLAIN}}carolpw');
INSERT INTO users (username, login, password) VALUES ('dave@example.test', 'dave@example.test',
  '{schemes.generate("PLAIN-MD5", b"davepw")[len("{PLAIN-MD5}"):]}');
INSERT INTO users (username, login, password, allow_nets, nologin) VALUES
  ('net@example.test', 'net@example.test', '{{PLAIN}}netpw', '10.0.0.0/8', NULL),
  ('nol@example.test', 'nol@example.test', '{{PLAIN}}nolpw', NULL, 'y');
"""  # noqa: S608 - fixed test data
DOVECOT_QUERY = (
    "SELECT username AS user, password FROM mailbox WHERE username = '%u' AND active = '1'"
)
NATIVE_QUERY = (
    'SELECT username AS "user", password, allow_nets, nologin FROM users WHERE login = :user'
)
HOSTILE = [
    "x' OR '1'='1", "bob@example.test' --", "bob@example.test'; DROP TABLE users; --",
    '") OR ("1"="1', "bob@example.test\\' OR 1=1 #", "%", "%u", "bob@example.test%",
    "select * from users", "null", "' UNION SELECT '{PLAIN}x', NULL, NULL, NULL --",
    ":user", "$1", "?", "twin@example.test' AND '1'='0",
]
ALLOWED = DEFAULT_ALLOWED_CHARS + "'\"%;\\ =#()*,{}$?:"


@dataclass
class Setup:
    kind: str
    daemon: Saslauth
    passdbs: str  # the YAML passdb items (absolute paths), for other daemons
    stop: Callable[[], object]
    start: Callable[[], object]
    add_user: Callable[[str, str], None]
    server: Server | None = None

    def auth(self, user: str, password: str, rip: str = "127.0.0.1") -> str:
        with AuthClient.connect(self.daemon.address) as client:
            client.handshake()
            reply = client.auth(
                f"AUTH\t1\tPLAIN\tservice=smtp\trip={rip}\tresp={plain_b64('', user, password)}",
                timeout=15,
            )
        assert reply is not None
        # A reply whose extra fields were all hidden (user=, allow_nets) holds one empty field,
        # as Dovecot's does (chain.apply_fields); it carries nothing, so drop it here.
        return "\t".join(part for part in reply.split("\t") if part)


def _passdbs(kind: str, dsn: str, extra: str = "") -> str:
    return (
        f"  - driver: sql\n    name: {kind}-dovecot\n    dsn: {json.dumps(dsn)}\n"
        f"    query: {json.dumps(DOVECOT_QUERY)}\n    connect_timeout: 1s\n"
        f"    query_timeout: 2s\n{extra}"
        f"  - driver: sql\n    name: {kind}-native\n    dsn: {json.dumps(dsn)}\n"
        f"    query: {json.dumps(NATIVE_QUERY)}\n    connect_timeout: 1s\n{extra}"
    )


def _config(work: Path, passdbs: str, *, mode: str = "0666", owner: str = "") -> Path:
    text = (
        "user: nobody\nfailure_delay: 0\nauth_log: all\n"
        f"username:\n  allowed_chars: {json.dumps(ALLOWED)}\n"
        f"listen:\n  - path: {work}/auth\n    mode: \"{mode}\"\n{owner}"
        f"passdb:\n{passdbs}"
    )
    path = work / "saslauth.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def sqlite_setup() -> Iterator[Setup]:
    with public_tmpdir() as work:
        db = work / "users.db"
        with contextlib.closing(sqlite3.connect(db)) as conn, conn:
            conn.executescript(SCHEMA + DATA)

        def add_user(name: str, stored: str) -> None:
            with contextlib.closing(sqlite3.connect(db)) as conn, conn:
                conn.execute("INSERT INTO users (username, login, password) VALUES (?, ?, ?)",
                             (name, name, stored))

        config = _config(work, _passdbs("sqlite", "sqlite:users.db"))  # relative to the config
        daemon = start_saslauth(config, work / "auth")
        away = work / "away.db"
        try:
            yield Setup("sqlite", daemon, _passdbs("sqlite", f"sqlite://{db}"),
                        lambda: db.rename(away), lambda: away.rename(db), add_user)
        finally:
            daemon.stop()


def _server_setup(kind: str) -> Iterator[Setup]:
    with database(kind) as server, public_tmpdir() as work:
        server.sql(SCHEMA + DATA)
        dead = free_tcp_port()  # nothing listens there: every login first fails over
        if kind == "postgresql":
            server.sql("GRANT SELECT ON ALL TABLES IN SCHEMA public TO saslauth")
            (work / "db.secret").write_text(ROLE_PASSWORD + "\n")
            extra = (f"    hosts: [127.0.0.1:{dead}, 127.0.0.1:{server.port}]\n"
                     f"    password_file: {work}/db.secret\n")
            passdbs = _passdbs(kind, server.dsn, extra)
        else:
            dsn = server.dsn.replace("saslauth@", f"saslauth:{ROLE_PASSWORD}@")
            passdbs = _passdbs(kind, dsn.replace("127.0.0.1:", f"127.0.0.1:{dead},127.0.0.1:"))

        def add_user(name: str, stored: str) -> None:
            server.sql(f"INSERT INTO users (username, login, password) VALUES "  # noqa: S608
                       f"('{name}', '{name}', '{stored}')")  # test-chosen values only

        daemon = start_saslauth(_config(work, passdbs), work / "auth")
        try:
            yield Setup(kind, daemon, passdbs, server.stop, server.start, add_user, server)
        finally:
            daemon.stop()


@pytest.fixture(scope="module")
def postgresql_setup() -> Iterator[Setup]:
    yield from _server_setup("postgresql")


@pytest.fixture(scope="module")
def mariadb_setup() -> Iterator[Setup]:
    yield from _server_setup("mariadb")


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.root),
        pytest.param("mariadb", marks=pytest.mark.root),
    ]
)
def db(request: pytest.FixtureRequest) -> Setup:
    setup: Setup = request.getfixturevalue(f"{request.param}_setup")
    return setup


def test_right_and_wrong_password_and_unknown_user(db: Setup) -> None:
    assert db.auth("alice@example.test", "wonderland") == "OK\t1\tuser=alice@example.test"
    assert db.auth("bob@example.test", "bobpw") == "OK\t1\tuser=bob@example.test"
    wrong = db.auth("alice@example.test", "nope")
    assert wrong == "FAIL\t1\tuser=alice@example.test"
    assert db.auth("nobody@example.test", "nope") == "FAIL\t1\tuser=nobody@example.test"
    assert db.auth("gone@example.test", "gonepw").startswith("FAIL\t1\t")  # active = 0


def test_user_rewrite_default_scheme_and_extra_fields(db: Setup) -> None:
    renamed = db.auth("c.alias@example.test", "carolpw")
    assert renamed == "OK\t1\tuser=carol@example.test\toriginal_user=c.alias@example.test"
    assert db.auth("dave@example.test", "davepw") == "OK\t1\tuser=dave@example.test"  # MD5
    assert db.auth("net@example.test", "netpw").startswith("FAIL\t1\t")  # allow_nets
    assert db.auth("net@example.test", "netpw", rip="10.1.2.3") == "OK\t1\tuser=net@example.test"
    assert db.auth("nol@example.test", "nolpw") == "OK\t1\tuser=nol@example.test\tnologin=y"


def test_hostile_user_names_are_unknown_users(db: Setup) -> None:
    for name in HOSTILE:
        reply = db.auth(name, "{PLAIN}x")
        assert reply.startswith("FAIL\t1\t") and "temp" not in reply, (name, reply)
    # nothing was changed or dropped: the users of both tables still log in
    assert db.auth("bob@example.test", "bobpw") == "OK\t1\tuser=bob@example.test"
    assert db.auth("alice@example.test", "wonderland") == "OK\t1\tuser=alice@example.test"


def test_several_rows_are_a_temporary_failure_logged_once(db: Setup) -> None:
    for _ in range(3):
        assert db.auth("twin@example.test", "a").endswith("\tcode=temp_fail")
    db.daemon.wait_log("several rows")
    assert db.daemon.log_text().count("several rows (must be one)") == 1


def test_outage_is_a_temporary_failure_then_recovers(db: Setup) -> None:
    assert db.auth("bob@example.test", "bobpw") == "OK\t1\tuser=bob@example.test"
    db.stop()
    try:
        down = db.auth("bob@example.test", "bobpw")
        assert down == "FAIL\t1\tuser=bob@example.test\tcode=temp_fail"
        assert db.auth("nobody@example.test", "x").endswith("\tcode=temp_fail")
    finally:
        db.start()
    assert db.auth("bob@example.test", "bobpw") == "OK\t1\tuser=bob@example.test"
    assert db.auth("alice@example.test", "wonderland") == "OK\t1\tuser=alice@example.test"


def test_passwords_never_logged(db: Setup) -> None:
    db.auth("alice@example.test", "Wrong-Guess-77")
    text = db.daemon.log_text()
    for secret in ("wonderland", "Wrong-Guess-77", "bobpw", ROLE_PASSWORD, "$6$"):
        assert secret not in text


@pytest.mark.postfix
@pytest.mark.root
def test_postfix_logins_through_sqlite_and_postgresql(
    sqlite_setup: Setup, postgresql_setup: Setup, tmp_path_factory: pytest.TempPathFactory
) -> None:
    reason = postfix_skip_reason()
    if reason:
        pytest.skip(reason)
    sqlite_setup.add_user("lite@example.test", "{PLAIN}litepw")
    postgresql_setup.add_user("pg@example.test", "{PLAIN}pgpw")
    with public_tmpdir() as work:
        owner = "    user: postfix\n    group: postfix\n"
        config = _config(work, sqlite_setup.passdbs + postgresql_setup.passdbs,
                         mode="0660", owner=owner)
        with running(config, work / "auth") as daemon:
            postfix = start_postfix(tmp_path_factory.mktemp("postfix"), sasl_path=f"{work}/auth")
            try:
                port = postfix.smtp_port
                lite = swaks_auth(port, user="lite@example.test", password="litepw")
                assert lite.auth_code == 235, lite.output
                pg = swaks_auth(port, user="pg@example.test", password="pgpw", mech="LOGIN")
                assert pg.auth_code == 235, pg.output
                wrong = swaks_auth(port, user="pg@example.test", password="nope")
                assert wrong.auth_code == 535, wrong.output
                postfix.wait_maillog("sasl_method=LOGIN, sasl_username=pg@example.test")
            finally:
                postfix.stop()
            daemon.wait_log("result=ok user=pg@example.test")
            assert "backend=postgresql-native" in daemon.log_text()
            assert "result=ok user=lite@example.test mech=PLAIN" in daemon.log_text()


SLEEPY = {
    "postgresql": "SELECT password FROM users WHERE login = :user AND "
                  "(SELECT 1 FROM pg_sleep(1)) = 1",
    "mariadb": "SELECT password FROM users WHERE login = :user AND SLEEP(1) = 0",
}


def _driver(server: Server, hosts: list[str], query: str, work: Path) -> SqlPassDB:
    secret = work / "secret"
    secret.write_text(ROLE_PASSWORD)
    cfg = config.parse(
        f"listen:\n  - path: /tmp/x\npassdb:\n  - driver: sql\n    dsn: {server.dsn}\n"
        f"    hosts: {json.dumps(hosts)}\n    password_file: {secret}\n"
        f"    query: {json.dumps(query)}\n    connect_timeout: 500ms\n    query_timeout: 300ms\n",
        "t.yaml",
    )
    settings = cfg.passdb[0]
    assert isinstance(settings, config.SqlSettings)
    return SqlPassDB(settings, ThreadPoolExecutor(1))


def _timed_verify(db: SqlPassDB, user: str, password: str) -> tuple[float, Verdict | str]:
    async def run() -> tuple[float, Verdict | str]:
        async with contextlib.AsyncExitStack() as stack:
            await db.start(stack)
            start = time.monotonic()
            try:
                verdict: Verdict | str = (
                    await db.verify_plain(VerifyRequest(user, password.encode(), "smtp"))
                ).verdict
            except BackendError as exc:
                verdict = str(exc)
            return time.monotonic() - start, verdict
    return asyncio.run(run())


@pytest.mark.root
@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_connect_and_query_timeouts(kind: str, request: pytest.FixtureRequest) -> None:
    setup: Setup = request.getfixturevalue(f"{kind}_setup")
    assert setup.server is not None
    real = f"127.0.0.1:{setup.server.port}"
    with socket.socket() as silent, public_tmpdir() as work:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes the handshake; nobody ever answers
        mute = f"127.0.0.1:{silent.getsockname()[1]}"
        native = NATIVE_QUERY.replace(", allow_nets, nologin", "")
        took, verdict = _timed_verify(_driver(setup.server, [mute, real], native, work),
                                      "bob@example.test", "bobpw")
        assert verdict is Verdict.OK and 0.45 < took < 3, (took, verdict)
        took, verdict = _timed_verify(_driver(setup.server, [mute], native, work),
                                      "bob@example.test", "bobpw")
        assert isinstance(verdict, str) and "connect timed out" in verdict and took < 2
        took, verdict = _timed_verify(_driver(setup.server, [real], SLEEPY[kind], work),
                                      "bob@example.test", "bobpw")
        assert isinstance(verdict, str) and "query timed out" in verdict and took < 0.9, took
