#!/usr/bin/env python3
"""In-process CPU cost of the verifier child's per-request path, without sockets.

The real ChildProtocol with a passwd-file passdb of 1000 ``{PLAIN}`` users gets batches of 25
verify requests (as a front sends them under load, right and wrong passwords mixed 9:1); its
replies go to a sink.  Prints CPU microseconds per request (best of ``--repeat``), or a
cProfile listing with ``--profile``.

    PYTHONPATH=src python3 bench/verifier_cost.py [--requests 50000] [--profile]
"""

# ruff: noqa: E402
from __future__ import annotations

import sys
from pathlib import Path

# Instead of this folder (its profile.py would shadow the stdlib module cProfile imports): src/.
sys.path[0] = str(Path(__file__).resolve().parents[1] / "src")

import argparse
import asyncio
import cProfile
import logging
import pstats
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from saslauth import loops
from saslauth.passdb.registry import build_chain
from saslauth.settings.passwd_file import PasswdFileSettings
from saslauth.verifier.child import ChildProtocol

BATCH = 25


class Sink:
    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += data.count(b"\n")

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


async def run(requests: int, directory: Path) -> float:
    passwd = directory / "passwd"
    passwd.write_text("".join(f"user{i}:{{PLAIN}}pw{i}\n" for i in range(1000)))
    settings = PasswdFileSettings(driver="passwd-file", path=str(passwd))
    with ThreadPoolExecutor(1) as executor:
        chain = build_chain([settings], executor)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        child = ChildProtocol(chain, done)
        sink = Sink()
        child.connection_made(sink)  # type: ignore[arg-type]
        batches = []
        for start in range(0, 1000, BATCH):
            lines = []
            for i in range(start, start + BATCH):
                password = f"pw{i}" if i % 10 else "wrong"
                rip = f"10.0.0.{i % 250}"
                lines.append(f"V\t{i + 1}\tuser{i}\t{password}\tsmtp\t{rip}\t127.0.0.1\t0\n")
            batches.append("".join(lines).encode())
        child.data_received(batches[0])  # loads the file
        await asyncio.sleep(0)
        rounds = requests // BATCH
        started = time.process_time()
        for index in range(rounds):
            child.data_received(batches[index % len(batches)])
            await asyncio.sleep(0)
        spent = time.process_time() - started
        assert sink.written >= rounds * BATCH, sink.written
    return spent / (rounds * BATCH) * 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", type=int, default=50000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(loops.run, lambda: run(args.requests, directory))
            pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
            return 0
        best = min(loops.run(lambda: run(args.requests, directory)) for _ in range(args.repeat))
    print(f"{best:.2f} us of CPU per request (best of {args.repeat} x {args.requests})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
