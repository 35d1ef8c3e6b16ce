"""Logins per second of the sql passdb (SQLite, PostgreSQL, MariaDB) against passwd-file.

10,000 users with {PLAIN} passwords in each backend, one saslauth daemon per backend (all from
this checkout, ``failure_delay: 0``, log level info), driven by authbench with 50 connections
(``-c 50 -f creds -r``) in alternating rounds, so drift on a shared machine hits all alike.
Needs root, cc, postgresql and mariadb-server (the servers come from tests/fixtures/sqldb.py).

    python3 bench/sql.py [--users 10000] [--rounds 3] [--seconds 5] [--conns 50]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.fixtures.ports import public_tmpdir  # noqa: E402
from tests.fixtures.saslauth import running  # noqa: E402
from tests.fixtures.sqldb import DATABASE, ROLE_PASSWORD, Server, database  # noqa: E402

AUTHBENCH_SRC = Path("/work/shared/tools/authbench.c")
QUERY = "SELECT password FROM users WHERE username = :user"


def build_authbench(out: Path) -> Path:
    subprocess.run(["cc", "-O2", "-o", str(out), str(AUTHBENCH_SRC)], check=True)
    return out


def load(server: Server, rows: list[tuple[str, str]]) -> None:
    values = ",\n".join(f"('{u}', '{p}')" for u, p in rows)  # generated names: no quotes
    sql = (f"CREATE TABLE users (username VARCHAR(255) PRIMARY KEY, password VARCHAR(255));\n"
           f"INSERT INTO users VALUES {values};\n")
    if server.kind == "postgresql":
        sql += "GRANT SELECT ON users TO saslauth;\n"
        argv = ["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                "-h", str(server.socket_dir), "-p", str(server.port), "-d", DATABASE]
    else:
        argv = ["mariadb", "--no-defaults", "-uroot", f"--socket={server.socket_dir}/sock",
                DATABASE]
    subprocess.run(argv, input=sql, text=True, check=True, capture_output=True)


def config(work: Path, name: str, passdb: str) -> tuple[Path, Path]:
    directory = work / name
    directory.mkdir()
    sock = directory / "auth"
    path = directory / "saslauth.yaml"
    path.write_text(f"user: nobody\nfailure_delay: 0\nlisten:\n  - path: {sock}\n"
                    f"    mode: \"0666\"\npassdb:\n{passdb}")
    return path, sock


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--pool-size", type=int, default=8)
    args = p.parse_args()
    rows = [(f"user{i:05d}@example.test", f"{{PLAIN}}pw{i:05d}") for i in range(args.users)]
    with public_tmpdir("sa-bench-") as work, contextlib.ExitStack() as stack:
        authbench = build_authbench(work / "authbench")
        creds = work / "creds"
        creds.write_text("".join(f"{u}:pw{u[4:9]}\n" for u, _ in rows))
        (work / "users").write_text("".join(f"{u}:{pw}\n" for u, pw in rows))
        with contextlib.closing(sqlite3.connect(work / "users.db")) as conn, conn:
            conn.execute("CREATE TABLE users (username TEXT PRIMARY KEY, password TEXT)")
            conn.executemany("INSERT INTO users VALUES (?, ?)", rows)
        secret = work / "db.secret"
        secret.write_text(ROLE_PASSWORD)
        pool = f"    pool_size: {args.pool_size}\n    password_file: {secret}\n"
        passdbs = {
            "passwd-file": f"  - driver: passwd-file\n    path: {work}/users\n",
            "sqlite": f"  - driver: sql\n    dsn: sqlite://{work}/users.db\n"
                      f"    query: {json.dumps(QUERY)}\n",
        }
        for kind in ("postgresql", "mariadb"):
            server = stack.enter_context(database(kind))
            load(server, rows)
            passdbs[kind] = (f"  - driver: sql\n    dsn: {server.dsn}\n"
                             f"    query: {json.dumps(QUERY)}\n{pool}")
        sockets = {}
        for name, passdb in passdbs.items():
            path, sock = config(work, name, passdb)
            stack.enter_context(running(path, sock))
            sockets[name] = sock
        results: dict[str, list[dict[str, float]]] = {name: [] for name in sockets}
        for rnd in range(args.rounds):
            for name, sock in sockets.items():
                out = subprocess.run(
                    [str(authbench), "-s", str(sock), "-f", str(creds), "-c", str(args.conns),
                     "-t", str(args.seconds), "-w", "1", "-r"],
                    capture_output=True, text=True, check=True, timeout=args.seconds + 60,
                )
                result = json.loads(out.stdout)
                results[name].append(result)
                print(f"round {rnd + 1} {name}: {out.stdout.strip()}", file=sys.stderr)
    print(f"{args.users} users, {{PLAIN}}, authbench -c {args.conns} -t {args.seconds:g} -r, "
          f"{args.rounds} rounds (median); pool_size {args.pool_size}")
    print(f"{'backend':<12} {'logins/s':>9} {'vs file':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'non-OK':>7}")
    base = statistics.median(r["auth_per_s"] for r in results["passwd-file"])
    clean = True
    for name, runs in results.items():
        rate = statistics.median(r["auth_per_s"] for r in runs)
        bad = sum(int(r["fail"] + r["other"] + r["closed"]) for r in runs)
        clean = clean and bad == 0
        print(f"{name:<12} {rate:>9.0f} {rate / base:>7.2f}x "
              f"{statistics.median(r['p50_us'] for r in runs) / 1000:>7.1f} "
              f"{statistics.median(r['p99_us'] for r in runs) / 1000:>7.1f} {bad:>7}")
    return 0 if clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
