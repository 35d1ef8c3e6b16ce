#!/usr/bin/env python3
"""Logins per second through saslauth with ``driver: imap`` against passwd-file, in one run.

Starts a throwaway Dovecot IMAP (tests/fixtures/dovecot.py; root only) with 50 ``{PLAIN}``
users, then for each passdb -- passwd-file on the same file, IMAP with implicit TLS, STARTTLS
and plaintext -- a saslauth daemon, and runs authbench (/work/shared/tools/authbench.c, built
to /tmp/authbench) against it.  Prints authbench's JSON line and the CPU seconds the verifier
and front used.  ``--tuned`` puts Dovecot's imap-login and imap in performance mode
(``service_count = 0``); by default it forks one login process per connection.

Usage: PYTHONPATH=src python3 scripts/bench_imap.py [-c 20] [-t 10] [--tuned]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.dovecot import start_dovecot_imap, write_passwd_file
from tests.fixtures.saslauth import start_saslauth
from tests.integration.test_imap import imap_config, passdb_yaml

AUTHBENCH = "/tmp/authbench"
TUNED = """service imap-login {
  service_count = 0
  process_min_avail = 2
}
service imap {
  service_count = 0
  process_min_avail = 4
  client_limit = 100
}
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench(name: str, passdb: str, creds: Path, args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-imap-", dir="/tmp"))
    work.chmod(0o755)
    daemon = start_saslauth(imap_config(work, passdb), work / "auth")
    try:
        kids = daemon.wait_children()
        before = {role: cpu_seconds(pid) for role, pid in kids.items()}
        out = subprocess.run(
            [AUTHBENCH, "-s", str(work / "auth"), "-f", str(creds), "-c", str(args.c),
             "-t", str(args.t)],
            capture_output=True, text=True, timeout=args.t + 60, check=False,
        )  # fmt: skip
        used = {role: round(cpu_seconds(pid) - before[role], 1) for role, pid in kids.items()}
        print(f"{name:14} {out.stdout.strip()} cpu_s={used}", flush=True)
    finally:
        daemon.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", type=int, default=20, help="concurrent clients")
    parser.add_argument("-t", type=int, default=10, help="seconds per passdb")
    parser.add_argument("--tuned", action="store_true", help="Dovecot performance mode")
    args = parser.parse_args()
    if not os.access(AUTHBENCH, os.X_OK):
        sys.exit(f"build it first: cc -O2 -o {AUTHBENCH} /work/shared/tools/authbench.c")
    users = {f"user{i}": (f"pw-{i}-secret", "") for i in range(50)}
    tmp = Path(tempfile.mkdtemp(prefix="bench-imap-"))
    passwd = write_passwd_file(tmp / "users", users)
    creds = tmp / "creds"
    creds.write_text("".join(f"{user}:{pw}\n" for user, (pw, _) in users.items()))
    server = start_dovecot_imap(
        tmp / "dovecot", passwd, tls=True, extra_conf=TUNED if args.tuned else ""
    )
    try:
        passwd_file = f"  - driver: passwd-file\n    path: {passwd}\n"
        ca = str(server.ca_file)
        bench("passwd-file", passwd_file, creds, args)
        bench(
            "imap-implicit", passdb_yaml(server.tls_port or 0, "implicit", ca_file=ca), creds, args
        )
        bench("imap-starttls", passdb_yaml(server.port, "starttls", ca_file=ca), creds, args)
        bench("imap-none", passdb_yaml(server.port, "none"), creds, args)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
