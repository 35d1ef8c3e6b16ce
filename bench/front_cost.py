#!/usr/bin/env python3
"""In-process CPU cost of the front's per-request path, without sockets or a verifier process.

50 sessions (the real Session, protocol, PLAIN mechanism and verifier client codec; with
``--auth-log all`` the auth log line too, logged to /dev/null) get one ``AUTH PLAIN`` each per
round, shaped as authbench sends it; the verifier's replies are made up in the same process.
Prints CPU microseconds per request (best of ``--repeat``), or a cProfile listing with
``--profile``.  For instruction counts that do not depend on the machine's load, run it under
``valgrind --tool=callgrind`` with two request counts and divide the difference.

    PYTHONPATH=src python3 bench/front_cost.py [--requests 30000] [--profile]
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# Instead of this folder (its profile.py would shadow the stdlib module cProfile imports): src/.
sys.path[0] = str(Path(__file__).resolve().parents[1] / "src")

import argparse
import asyncio
import base64
import cProfile
import logging
import os
import pstats
import time

from saslauth import logbatch, logs, loops
from saslauth.session import Session
from saslauth.sessionsettings import SessionSettings
from saslauth.usernames import UsernamePolicy
from saslauth.verifier.client import VerifierClient, _Link

CONNECTIONS = 50
DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - the log goes nowhere for the whole run


class Sink:
    """A transport that keeps nothing (client side) or what was written (verifier side)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def close(self) -> None:
        pass


async def run(requests: int, log_successes: bool) -> float:
    logs.setup("info", "front")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(DEVNULL)
    streams = logbatch.install()
    settings = SessionSettings.create(
        ["PLAIN", "LOGIN"], UsernamePolicy(), failure_delay=0.0, log_successes=log_successes
    )
    client = VerifierClient()
    link = _Link(client, 1)
    to_verifier = Sink()
    link.connection_made(to_verifier)  # type: ignore[arg-type]
    link.data_received(b"READY\t1\n")
    sessions = []
    for cuid in range(CONNECTIONS):
        session = Session(settings, client.send, cuid, "c" * 32)
        session.connection_made(Sink())  # type: ignore[arg-type]
        session.data_received(b"VERSION\t1\t0\nCPID\t1\n")
        sessions.append(session)
    resps = [base64.b64encode(b"\0user%d\0pw%d" % (i, i)) for i in range(1000)]
    started = time.process_time()
    rid = 0
    for _ in range(requests // CONNECTIONS):
        for session in sessions:
            rid += 1
            session.data_received(
                b"AUTH\t%d\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=10.%d.%d.%d\tresp=%s\n"
                % (rid, (rid >> 16) & 255, (rid >> 8) & 255, rid & 255, resps[rid % 1000])
            )
        await asyncio.sleep(0)  # the batch goes to the "verifier"
        replies = [
            b"R\t" + line.split(b"\t", 2)[1] + b"\tok\t\tpasswd-file\t0\t\n"
            for data in to_verifier.written
            for line in data.split(b"\n")[:-1]
        ]
        to_verifier.written.clear()
        link.data_received(b"".join(replies))
        await asyncio.sleep(0)
    spent = time.process_time() - started
    logbatch.drain(streams)
    return spent / (requests // CONNECTIONS * CONNECTIONS) * 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", type=int, default=30000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--profile", action="store_true")
    p.add_argument(
        "--auth-log",
        choices=("failures", "all"),
        default="failures",
        help="the daemon's auth_log (default failures, its default: no line for these logins)",
    )
    args = p.parse_args()
    log_successes = args.auth_log == "all"
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(loops.run, lambda: run(args.requests, log_successes))
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return 0
    best = min(loops.run(lambda: run(args.requests, log_successes)) for _ in range(args.repeat))
    print(f"{best:.2f} us of CPU per request (best of {args.repeat} x {args.requests})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
