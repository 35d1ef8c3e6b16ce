"""Dovecot query translation: fixed SQL text, user input only in bound parameters."""

from __future__ import annotations

import re
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saslauth.passdb.sql.query import Dialect, compile_query, variables

DIALECTS: list[Dialect] = ["sqlite", "postgresql", "mysql"]
VALUES = variables("Alice@Example.org", "smtp", "192.0.2.7", "198.51.100.1", True)


@pytest.mark.parametrize(
    ("query", "dialect", "sql", "args"),
    [
        ("SELECT password FROM users WHERE userid = '%u'", "sqlite",
         "SELECT password FROM users WHERE userid = ?", ("Alice@Example.org",)),
        ("SELECT password FROM users WHERE userid = '%u' OR alias = '%u'", "postgresql",
         "SELECT password FROM users WHERE userid = $1 OR alias = $1", ("Alice@Example.org",)),
        ("SELECT password FROM users WHERE userid = '%Lu' AND x LIKE 'a%%'", "mysql",
         "SELECT password FROM users WHERE userid = %s AND x LIKE 'a%%'", ("alice@example.org",)),
        ("SELECT p FROM t WHERE u = \"%n@%d\" AND s = %s", "postgresql",
         "SELECT p FROM t WHERE u = $1 AND s = $2", ("Alice@Example.org", "smtp")),
        ("SELECT p FROM t WHERE n = '%n' AND d = '%Ud' AND r = '%r' AND l = '%l' AND c = '%c'",
         "sqlite", "SELECT p FROM t WHERE n = ? AND d = ? AND r = ? AND l = ? AND c = ?",
         ("Alice", "EXAMPLE.ORG", "192.0.2.7", "198.51.100.1", "secured")),
        ("SELECT p FROM t WHERE u = '%{user}' AND d = %{domain | lower} AND r = '%{real_rip}'",
         "postgresql", "SELECT p FROM t WHERE u = $1 AND d = $2 AND r = $3",
         ("Alice@Example.org", "example.org", "192.0.2.7")),
        ("SELECT p::text FROM t WHERE u = :user AND n = :username -- '%u' stays a comment",
         "postgresql", "SELECT p::text FROM t WHERE u = $1 AND n = $2 -- '%u' stays a comment",
         ("Alice@Example.org", "Alice")),
        ("SELECT p FROM t WHERE u = :user /* %u */ AND s = ':user'", "mysql",
         "SELECT p FROM t WHERE u = %s /* %%u */ AND s = ':user'", ("Alice@Example.org",)),
        ("SELECT p FROM t WHERE u = 'it''s %u'", "sqlite", "SELECT p FROM t WHERE u = ?",
         ("it's Alice@Example.org",)),
        ("SELECT p FROM t WHERE u = 'it\\'s %u'", "mysql", "SELECT p FROM t WHERE u = %s",
         ("it's Alice@Example.org",)),
        ("SELECT '100%%' AS pct, p FROM t WHERE u = :user", "sqlite",
         "SELECT '100%' AS pct, p FROM t WHERE u = ?", ("Alice@Example.org",)),
    ],
)
def test_translation(query: str, dialect: Dialect, sql: str, args: tuple[str, ...]) -> None:
    compiled = compile_query(query, dialect)
    assert compiled.sql == sql
    assert compiled.bind(VALUES) == args


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT %w", "the password cannot be a query parameter"),
        ("SELECT '%{password}'", "the password cannot be a query parameter"),
        ("SELECT %x", "unknown variable %x"),
        ("SELECT %{nosuch}", "unknown variable %{nosuch}"),
        ("SELECT %Qu", "unsupported modifier %Q"),
        ("SELECT %{user | md5}", "unknown filter |md5"),
        ("SELECT :nosuch", "unknown parameter :nosuch"),
        ("SELECT 'abc", "unterminated quote"),
        ("SELECT a LIKE 'x%'", "a lone %"),
        ("   ", "the query is empty"),
    ],
)
def test_bad_queries_are_named(query: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        compile_query(query, "postgresql")


def test_driver_placeholders_are_refused() -> None:
    with pytest.raises(ValueError, match="not \\?"):
        compile_query("SELECT p FROM t WHERE u = ?", "sqlite")
    with pytest.raises(ValueError, match="not \\$1"):
        compile_query("SELECT p FROM t WHERE u = $1", "postgresql")


def test_variables_split_at_the_first_at() -> None:
    values = variables("a@b@c", "imap", None, None, False)
    assert (values["username"], values["domain"], values["rip"], values["secured"]) == (
        "a", "b@c", "", ""
    )


# --- property: no user input ever reaches the SQL text --------------------------------------

FRAGMENTS = st.sampled_from([
    "SELECT password FROM users WHERE ", "username = ", "'%u'", "%u", "'%Lu'", "'%n@%d'",
    ":user", ":domain", "%{user}", " AND ", "active = '1'", " OR ", "\"%n\"", "%s", "'%r'",
    " -- note\n", "'%%'", "x LIKE '%u%%'",
])
HOSTILE = st.text(
    alphabet=st.sampled_from("'\"%;\\-#/*:?$ ()=aA1@.\n\t_") | st.characters(codec="utf-8"),
    min_size=1, max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(FRAGMENTS, min_size=1, max_size=8), user=HOSTILE,
       dialect=st.sampled_from(DIALECTS))
def test_user_input_never_appears_in_the_sql_text(
    parts: list[str], user: str, dialect: Dialect
) -> None:
    query = "".join(parts)
    try:
        compiled = compile_query(query, dialect)
    except ValueError:
        return  # some fragment sequences are not valid queries: then nothing runs at all
    marker = "\x01" + user + "\x02"
    args = compiled.bind(variables(marker, marker, marker, marker, True))
    assert marker not in compiled.sql and "\x01" not in compiled.sql
    assert len(args) == len(compiled.params)
    # the same query text serves every user: the SQL never depends on the input
    other = compile_query(query, dialect)
    assert other.sql == compiled.sql
    if dialect == "postgresql":
        numbers = {int(n) for n in re.findall(r"\$(\d+)", compiled.sql)}
        assert numbers == set(range(1, len(args) + 1))


@settings(max_examples=100, deadline=None)
@given(user=HOSTILE)
def test_hostile_names_bound_in_real_sqlite_find_nothing(user: str) -> None:
    compiled = compile_query(
        "SELECT password FROM users WHERE username = '%u' AND active = '1'", "sqlite"
    )
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE users (username TEXT, password TEXT, active INTEGER)")
        conn.execute("INSERT INTO users VALUES ('bob', '{PLAIN}x', 1)")
        rows = conn.execute(compiled.sql, compiled.bind(variables(user, "", None, None, False)))
        assert rows.fetchall() == ([("{PLAIN}x",)] if user == "bob" else [])
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (1,)
    finally:
        conn.close()
