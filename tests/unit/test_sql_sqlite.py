"""The sql driver in-process against real SQLite files (no daemon): verdicts and edge cases."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from saslauth import config, schemes
from saslauth.errors import BackendError
from saslauth.passdb import Verdict
from saslauth.passdb.chain import Chain
from saslauth.passdb.sql.driver import SqlPassDB
from saslauth.verifier import VerifyRequest


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as pool:
        yield pool


def make_db(path: Path, rows: list[tuple[str, str | None, str | None]]) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE users (username TEXT, password TEXT, nologin TEXT, "
                     "userdb_home TEXT, quota INTEGER)")
        conn.executemany("INSERT INTO users (username, password, nologin) VALUES (?, ?, ?)", rows)


def driver(path: Path, executor: ThreadPoolExecutor, query: str = "", extra: str = "") -> SqlPassDB:
    q = query or "SELECT password, nologin, userdb_home, quota FROM users WHERE username = :user"
    cfg = config.parse(
        f"listen:\n  - path: /tmp/x\npassdb:\n  - driver: sql\n    dsn: sqlite://{path}\n"
        f"    query: \"{q}\"\n{extra}",
        "t.yaml",
    )
    settings = cfg.passdb[0]
    assert isinstance(settings, config.SqlSettings)
    return SqlPassDB(settings, executor)


def verify(db: SqlPassDB, user: str, password: str) -> tuple[Verdict, tuple[object, ...]]:
    async def run() -> tuple[Verdict, tuple[object, ...]]:
        lookup = await db.verify_plain(VerifyRequest(user, password.encode(), "smtp"))
        return lookup.verdict, lookup.extra
    return asyncio.run(run())


def test_start_registers_close(tmp_path: Path, executor: ThreadPoolExecutor) -> None:
    make_db(tmp_path / "u.db", [("bob", "{PLAIN}bobpw", None)])
    db = driver(tmp_path / "u.db", executor)

    async def run() -> Verdict:
        async with contextlib.AsyncExitStack() as stack:
            await db.start(stack)
            return (await db.verify_plain(VerifyRequest("bob", b"bobpw", "smtp"))).verdict
    assert asyncio.run(run()) is Verdict.OK
    with pytest.raises(RuntimeError, match="after shutdown"):  # the thread was stopped
        verify(db, "bob", "bobpw")


def test_verdicts_columns_and_nulls(tmp_path: Path, executor: ThreadPoolExecutor) -> None:
    db_path = tmp_path / "u.db"
    make_db(db_path, [("bob", "{PLAIN}bobpw", None), ("nol", "{PLAIN}x", "y"),
                      ("md5", schemes.generate("PLAIN-MD5", b"m")[11:], None), ("empty", "", None),
                      ("badscheme", "{NOSUCH}x", None)])
    db = driver(db_path, executor)
    assert verify(db, "bob", "bobpw") == (Verdict.OK, ())  # NULL columns and userdb_* left out
    assert verify(db, "bob", "nope")[0] is Verdict.PASSWORD_MISMATCH
    assert verify(db, "nobody", "x")[0] is Verdict.USER_UNKNOWN
    assert verify(db, "nol", "x") == (Verdict.OK, (("nologin", "y"),))
    assert verify(db, "md5", "m")[0] is Verdict.OK  # no {SCHEME}: default_scheme MD5
    assert verify(db, "empty", "")[0] is Verdict.PASSWORD_MISMATCH
    assert verify(db, "badscheme", "x")[0] is Verdict.INTERNAL_FAILURE


def test_password_noscheme_and_integer_columns(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    db_path = tmp_path / "u.db"
    make_db(db_path, [("ann", "{literal}brace", None)])
    with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
        conn.execute("UPDATE users SET quota = 42")
    db = driver(db_path, executor,
                "SELECT password AS password_noscheme, quota FROM users WHERE username = '%u'",
                "    default_scheme: PLAIN\n")
    assert verify(db, "ann", "{literal}brace") == (Verdict.OK, (("quota", "42"),))


def test_several_rows_logged_once(tmp_path: Path, executor: ThreadPoolExecutor,
                                  caplog: pytest.LogCaptureFixture) -> None:
    db_path = tmp_path / "u.db"
    make_db(db_path, [("twin", "{PLAIN}a", None), ("twin", "{PLAIN}b", None)])
    db = driver(db_path, executor)
    with caplog.at_level(logging.ERROR, "saslauth.passdb"):
        for _ in range(3):
            assert verify(db, "twin", "a")[0] is Verdict.INTERNAL_FAILURE
    assert [r.getMessage() for r in caplog.records].count(
        f"passdb {db.name}: user twin: the query returned several rows (must be one)") == 1


def test_missing_then_replaced_file(tmp_path: Path, executor: ThreadPoolExecutor) -> None:
    db_path = tmp_path / "u.db"
    db = driver(db_path, executor)
    with pytest.raises(BackendError, match="No such file"):
        verify(db, "bob", "bobpw")
    make_db(db_path, [("bob", "{PLAIN}old", None)])
    assert verify(db, "bob", "old")[0] is Verdict.OK
    new = tmp_path / "new.db"
    make_db(new, [("bob", "{PLAIN}new", None)])
    new.rename(db_path)  # atomic replace: the driver must read the new file
    assert verify(db, "bob", "new")[0] is Verdict.OK
    assert verify(db, "bob", "old")[0] is Verdict.PASSWORD_MISMATCH


def test_broken_query_is_an_outage_not_unknown(
    tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    db_path = tmp_path / "u.db"
    make_db(db_path, [])
    db = driver(db_path, executor, "SELECT password FROM nosuchtable WHERE username = :user")
    with pytest.raises(BackendError, match="no such table"):
        verify(db, "bob", "x")
    chain = Chain([db])
    lookup = asyncio.run(chain.verify_plain(VerifyRequest("bob", b"x", "smtp")))
    assert lookup.verdict is Verdict.INTERNAL_FAILURE


def test_query_timeout_interrupts(tmp_path: Path, executor: ThreadPoolExecutor) -> None:
    db_path = tmp_path / "u.db"
    make_db(db_path, [("bob", "{PLAIN}x", None)])
    slow = ("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 100000000) "
            "SELECT password FROM users WHERE username = :user AND (SELECT max(n) FROM c) > 0")
    db = driver(db_path, executor, slow, "    query_timeout: 200ms\n")
    loop_start = asyncio.run(_timed(db))
    assert loop_start < 2.0


async def _timed(db: SqlPassDB) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(BackendError, match="timed out"):
        await db.verify_plain(VerifyRequest("bob", b"x", "smtp"))
    return loop.time() - start


def test_unknown_user_costs_a_real_hash(tmp_path: Path, executor: ThreadPoolExecutor) -> None:
    db_path = tmp_path / "u.db"
    make_db(db_path, [("slow", schemes.generate("SHA512-CRYPT", b"pw", rounds=200_000), None)])
    db = driver(db_path, executor)

    async def timed(user: str) -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await db.verify_plain(VerifyRequest(user, b"wrong", "smtp"))
        return loop.time() - start

    async def run() -> tuple[float, float]:
        await timed("slow")  # the first row seen becomes the dummy
        known = min([await timed("slow") for _ in range(3)])
        unknown = min([await timed("nobody") for _ in range(3)])
        return known, unknown

    known, unknown = asyncio.run(run())
    assert unknown > known * 0.5, (known, unknown)


def test_example_config_and_schema_work(tmp_path: Path, executor: ThreadPoolExecutor) -> None:
    examples = Path(__file__).parents[2] / "examples"
    cfg = config.load(examples / "saslauth-sql.yaml")
    settings = cfg.passdb[0]
    assert isinstance(settings, config.SqlSettings)
    db_path = tmp_path / "users.db"
    with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
        conn.executescript((examples / "sql" / "schema.sql").read_text())
        conn.execute("INSERT INTO users (username, password) VALUES (?, ?)",
                     ("demo@example.org", schemes.generate("SHA512-CRYPT", b"demo")))
        conn.execute("INSERT INTO users (username, password, active) VALUES (?, ?, 0)",
                     ("off@example.org", "{PLAIN}off"))
    db = SqlPassDB(settings.model_copy(update={"dsn": f"sqlite://{db_path}"}), executor)
    assert verify(db, "demo@example.org", "demo") == (Verdict.OK, (("user", "demo@example.org"),))
    assert verify(db, "off@example.org", "off")[0] is Verdict.USER_UNKNOWN
