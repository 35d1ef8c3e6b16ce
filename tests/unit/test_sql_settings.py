"""``driver: sql`` settings: DSNs, hosts, extras, path resolution, check-config notes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from saslauth import cli, config
from saslauth.errors import ConfigError
from saslauth.passdb.sql.settings import parse_dsn

HEAD = "listen:\n  - path: /tmp/x\npassdb:\n  - driver: sql\n"


def parse(body: str) -> config.SqlSettings:
    cfg = config.parse(HEAD + body, "s.yaml")
    passdb = cfg.passdb[0]
    assert isinstance(passdb, config.SqlSettings)
    return passdb


def problems(body: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.parse(HEAD + body, "s.yaml")
    return str(info.value).splitlines()


def test_dsn_forms() -> None:
    assert parse_dsn("sqlite:///var/lib/users.db").path == "/var/lib/users.db"
    assert parse_dsn("sqlite:users.db").path == "users.db"
    assert parse_dsn("sqlite://db/users.db").path == "db/users.db"
    pg = parse_dsn("postgresql://mail%40x:p%3Ass@h1,[::1]:5433,%2Frun%2Fpg/maildb?sslmode=require")
    assert (pg.user, pg.password, pg.database) == ("mail@x", "p:ss", "maildb")
    assert pg.hosts == (("h1", 5432), ("::1", 5433), ("/run/pg", 5432))
    assert pg.options == (("sslmode", "require"),)
    my = parse_dsn("mariadb://u@db.example:3307/mail")
    assert (my.dialect, my.hosts) == ("mysql", (("db.example", 3307),))
    assert "p:ss" not in repr(pg) and "p:ss" not in pg.shown()


def test_defaults_and_hosts_key() -> None:
    s = parse("    dsn: postgresql://mail@db1/mail\n    hosts: [db2, 'db3:6432']\n")
    assert s.target().hosts == (("db2", 5432), ("db3", 6432))
    assert (s.pool_size, s.connect_timeout, s.query_timeout, s.default_scheme) == (
        8, 2.0, 2.0, "MD5"
    )
    assert s.label == "sql:postgresql://mail@db2:5432,db3:6432/mail"
    assert parse("    dsn: mysql://mail@/mail\n").target().hosts == (("localhost", 3306),)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("    dsn: oracle://x/y\n", "s.yaml:5: passdb.0.dsn: must start with sqlite:"),
        ("    dsn: postgresql://u@h:99999/db\n", "s.yaml:5: passdb.0.dsn: bad port"),
        ("    dsn: postgresql://u@h/\n", "s.yaml:5: passdb.0.dsn: the DSN names no database"),
        ("    dsn: postgresql://u@h/db?sslmode=maybe\n", "passdb.0.dsn: sslmode must be one of"),
        ("    dsn: postgresql://u@h/db?foo=1\n", "passdb.0.dsn: unknown DSN option 'foo'"),
        ("    dsn: sqlite:x.db\n    hosts: [a]\n", "s.yaml:6: passdb.0.hosts: sqlite has no"),
        ("    dsn: sqlite:x.db\n    query: SELECT %w\n",
         "s.yaml:6: passdb.0.query: the password cannot be a query parameter"),
        ("    dsn: sqlite:x.db\n    pool_size: 0\n", "s.yaml:6: passdb.0.pool_size:"),
        ("    dsn: sqlite:x.db\n    colour: red\n", "s.yaml:6: passdb.0.colour: Extra inputs"),
        ("    query: SELECT 1\n", "passdb.0.dsn: Field required"),
    ],
)
def test_errors_have_file_line_and_key(body: str, expected: str) -> None:
    assert any(line.startswith(expected) or expected in line for line in problems(body)), (
        problems(body)
    )


def test_unencoded_password_characters() -> None:
    target = parse_dsn("postgresql://u:pa/ss?w@rd:x@h1:5433,h2/db?sslmode=disable")
    assert (target.user, target.password, target.database) == ("u", "pa/ss?w@rd:x", "db")
    assert target.hosts == (("h1", 5433), ("h2", 5432))
    for bad in ("postgresql://u:Se/cr?et@h:0/db", "postgresql://u:Se/cr?et@h/",
                "postgresql://u:Se/cr?et@h/db?x=1", "mysql://u:Se/cr?et@[::1/db"):
        lines = problems(f"    dsn: {bad!r}\n")
        assert lines and not any("Se/cr" in line or "et@" in line for line in lines), lines


def test_password_never_in_errors_or_repr() -> None:
    lines = problems("    dsn: postgresql://u:TopSecret1@h:0/db\n")
    assert not any("TopSecret1" in line for line in lines)
    s = parse("    dsn: postgresql://u:TopSecret1@h/db\n")
    assert "TopSecret1" not in repr(s) and "TopSecret1" not in s.label
    assert any("prefer password_file" in note for note in s.warnings())


def test_missing_extra_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> object:
        return None if name in ("asyncpg", "aiomysql") else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert problems("    dsn: postgresql://u@h/db\n") == [
        "s.yaml:5: passdb.0.dsn: postgresql needs the extra saslauth[postgresql] "
        "(pip install 'saslauth[postgresql]')"
    ]
    assert "saslauth[mysql]" in problems("    dsn: mysql://u@h/db\n")[0]
    assert parse("    dsn: sqlite:x.db\n").target().dialect == "sqlite"  # stdlib: no extra


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "users.db").write_bytes(b"")
    (tmp_path / "secret").write_text("pw\n")
    path = tmp_path / "s.yaml"
    path.write_text(
        "listen:\n  - path: auth\npassdb:\n  - driver: sql\n    dsn: sqlite:users.db\n"
        "  - driver: sql\n    dsn: postgresql://u@h/db\n    password_file: secret\n"
    )
    lite, pg = cli.load(str(path)).passdb
    assert isinstance(lite, config.SqlSettings) and isinstance(pg, config.SqlSettings)
    assert lite.target().path == str(tmp_path / "users.db")
    assert pg.password_file == str(tmp_path / "secret")
    assert lite.warnings() == [] and pg.warnings() == []


def test_check_config_notes(tmp_path: Path) -> None:
    s = parse(
        "    dsn: postgresql://u@h1,h2,h3/db\n    connect_timeout: 2s\n"
        f"    password_file: {tmp_path}/missing\n"
    )
    notes = s.warnings()
    assert any("password_file" in n and "not readable" in n for n in notes)
    assert any("exceeds the verifier's 7 s reply budget" in n for n in notes)
    lite = parse(f"    dsn: sqlite://{tmp_path}/none.db\n")
    assert lite.warnings() == [f"passdb {tmp_path}/none.db: not readable by this user "
                               "(the verifier reads it)"]
