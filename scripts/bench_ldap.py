#!/usr/bin/env python3
"""Benchmark the ldap passdb (bind and password modes) against passwd-file, through the daemon.

Starts a throwaway slapd (tests/fixtures/slapd.py) with N users whose ``{SSHA}`` hashes are
also written to a passwd-file, so every backend checks the same hash; then, for each backend,
a saslauth daemon, and runs authbench (``-c 20`` and ``-c 1``, PLAIN) against it.  slapd uses
StartTLS and a service account, as in examples/saslauth-ldap.yaml.  Needs slapd and
ldap-utils, and authbench built from /work/shared/tools/authbench.c.

Usage: python3 scripts/bench_ldap.py [--authbench /tmp/authbench] [--seconds 10] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "src")]

from tests.fixtures.ports import public_dir  # noqa: E402
from tests.fixtures.saslauth import running  # noqa: E402
from tests.fixtures.slapd import (  # noqa: E402
    BASE_DN,
    READER_DN,
    READER_PASSWORD,
    start_slapd,
    user_ldif,
)

from saslauth import schemes  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authbench", default="/tmp/authbench")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--users", type=int, default=200)
    args = parser.parse_args()
    users = {f"user{i}": f"pw{i}" for i in range(args.users)}
    hashes = {u: schemes.generate("SSHA", p.encode()) for u, p in users.items()}
    work = public_dir("ldapbench-")
    slapd = start_slapd(work / "slapd", "".join(user_ldif(u, h) for u, h in hashes.items()))
    try:
        (work / "creds").write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
        (work / "users").write_text("".join(f"{u}:{h}\n" for u, h in hashes.items()))
        (work / "reader.secret").write_text(READER_PASSWORD + "\n")
        ldap = (
            f"  - driver: ldap\n    uris: [{slapd.uri}]\n    tls: starttls\n"
            f"    ca_file: {slapd.ca.ca_cert}\n    base: {BASE_DN}\n"
            f"    bind_dn: {READER_DN}\n    bind_password_file: {work / 'reader.secret'}\n"
        )
        backends = {
            "passwd-file": f"  - driver: passwd-file\n    path: {work / 'users'}\n",
            "ldap auth=bind": ldap,
            "ldap auth=password": ldap + "    auth: password\n",
        }
        for round_ in range(args.rounds):
            for name, passdb in backends.items():
                sock = work / "auth"
                config = work / "saslauth.yaml"
                config.write_text(
                    "user: nobody\nfailure_delay: 0\nlog_level: warning\n"
                    f'listen:\n  - path: {sock}\n    mode: "0666"\npassdb:\n{passdb}'
                )
                with running(config, sock):
                    bench(args, sock, work / "creds", "2")  # warm-up: connections, caches
                    for clients in ("20", "1"):
                        r = bench(args, sock, work / "creds", str(args.seconds), clients)
                        print(
                            f"round {round_} {name:20} -c {clients:>2}: {r['auth_per_s']:6}/s "
                            f"ok={r['ok']} fail={r['fail']} other={r['other']} "
                            f"p50={r['p50_us'] / 1000:.2f} ms p99={r['p99_us'] / 1000:.2f} ms",
                            flush=True,
                        )
    finally:
        slapd.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def bench(
    args: argparse.Namespace, sock: Path, creds: Path, seconds: str, clients: str = "20"
) -> dict[str, int]:
    out = subprocess.run(
        [args.authbench, "-s", str(sock), "-f", str(creds), "-c", clients, "-t", seconds],
        capture_output=True, text=True, check=True, timeout=int(seconds) + 60,
    )  # fmt: skip
    result: dict[str, int] = json.loads(out.stdout)
    return result


if __name__ == "__main__":
    sys.exit(main())
