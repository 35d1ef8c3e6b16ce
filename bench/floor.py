#!/usr/bin/env python3
"""The floor of saslauth's design in Python: how fast a front + verifier pair can be at all.

Serves the Dovecot auth protocol on SOCKET for ``--seconds`` with ``--fronts`` bare front
processes (parse ``AUTH ... PLAIN ... resp=``, send ``seq user password`` lines to the verifier
once per loop turn, answer ``OK``/``FAIL``) and one bare verifier process (a dict of users
``userN``/``pwN``, ``hmac.compare_digest``, replies once per loop turn) on uvloop.  No
validation, escaping, limits, timeouts, logging or privilege drop: a measuring stick, never
a server to use.  Drive it with authbench as bench/run.py does, e.g.

    python3 bench/floor.py /tmp/floor.sock --seconds 10 &
    bench/authbench -s /tmp/floor.sock -f CREDS -c 50 -d 1 -t 5 -w 1 -r

where CREDS has lines ``userN:pwN`` for N in 0..999.

``--with checks,log`` adds back, to price them, the real front's per-request checks (every
parameter, the addresses in normal form, the username rules, the password's UTF-8 and
escaping) and its ``auth:`` log line (rendered as saslauth renders it, written once per turn).
"""

# ruff: noqa: E402
from __future__ import annotations

import argparse
import asyncio
import binascii
import hmac
import logging
import os
import socket
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1] / "src")

import uvloop

from saslauth import logs, wire
from saslauth.fieldvalues import address as _ip
from saslauth.usernames import DEFAULT_ALLOWED_CHARS

# --with: the real front's per-request work added back, to price it (see README).
CHECKS = LOG = False
ALLOWED = frozenset(DEFAULT_ALLOWED_CHARS)
DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - where --with log writes, for the whole run

USERS = {f"user{i}".encode(): f"pw{i}".encode() for i in range(1000)}
GREETING = b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nSPID\t1\nCUID\t1\nCOOKIE\t%s\nDONE\n" % (
    b"0" * 32
)


class Lines(asyncio.Protocol):
    """Complete lines to ``on_lines``, batched per read."""

    def __init__(self) -> None:
        self.rest = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        *lines, self.rest = (self.rest + data).split(b"\n")
        self.on_lines(lines)

    def on_lines(self, lines: list[bytes]) -> None:
        raise NotImplementedError


class Verifier(Lines):
    def on_lines(self, lines: list[bytes]) -> None:
        out = []
        for line in lines:
            seq, user, password = line.split(b"\t")
            stored = USERS.get(user)
            ok = stored is not None and hmac.compare_digest(stored, password)
            out.append(seq + (b"\t1\n" if ok else b"\t0\n"))
        assert self.transport is not None
        self.transport.write(b"".join(out))


async def verifier(socks: list[socket.socket], seconds: float) -> None:
    loop = asyncio.get_running_loop()
    for sock in socks:
        await loop.connect_accepted_socket(Verifier, sock)
    await asyncio.sleep(seconds)


async def front(listener: socket.socket, link_sock: socket.socket, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    waiting: dict[bytes, tuple[asyncio.Transport, bytes, bytes]] = {}
    queue: list[bytes] = []
    counter = [0]

    class Link(Lines):
        def on_lines(self, lines: list[bytes]) -> None:
            for line in lines:
                seq, ok = line.split(b"\t")
                client, rid, user = waiting.pop(seq)
                if ok == b"1":
                    client.write(b"OK\t" + rid + b"\tuser=" + user + b"\n")
                else:
                    client.write(b"FAIL\t" + rid + b"\n")
                if LOG:  # the auth: line, rendered as saslauth renders it, one write per turn
                    latency = (time.monotonic() - started.pop(seq)) * 1000
                    if not log_lines:
                        loop.call_soon(write_log)
                    log_lines.append(
                        render(
                            logging.INFO,
                            f"auth: result={'ok' if ok == b'1' else 'fail'} user={user.decode()}"
                            f" mech=PLAIN service=smtp rip={addresses[0]} lip={addresses[1]}"
                            f" secured=no verdict=ok backend=passwd-file latency_ms={latency:.1f}",
                        )
                    )

    started: dict[bytes, float] = {}
    log_lines: list[str] = []
    render = logs._plain_renderer("front")
    addresses = ["-", "-"]  # the last request's rip and lip (a measuring stick: close enough)

    def write_log() -> None:
        DEVNULL.write("".join(log_lines))
        log_lines.clear()

    _, link = await loop.connect_accepted_socket(Link, link_sock)

    def flush() -> None:
        assert link.transport is not None
        link.transport.write(b"".join(queue))
        queue.clear()

    class Client(Lines):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self.transport.write(GREETING)  # type: ignore[union-attr]

        def on_lines(self, lines: list[bytes]) -> None:
            for line in lines:
                if not line.startswith(b"AUTH\t"):
                    continue
                fields = line.split(b"\t")
                if CHECKS:  # what the real front checks: every parameter, names, addresses
                    params = {}
                    for field in fields[3:-1]:
                        name, _, value = field.partition(b"=")
                        params[name] = value
                    if b"service" not in params or not fields[1].isdigit():
                        continue
                    addresses[0] = _ip(params.get(b"rip")) or "-"
                    addresses[1] = _ip(params.get(b"lip")) or "-"
                resp = next(f[5:] for f in fields[3:] if f.startswith(b"resp="))
                _, user, password = binascii.a2b_base64(resp, strict_mode=True).split(b"\0")
                if CHECKS:
                    name = user.decode("utf-8", "surrogateescape")
                    if not (0 < len(name) <= 255 and ALLOWED.issuperset(name)):
                        continue
                    user = name.lower().encode()
                    password.decode("utf-8")
                    password = wire.escape(password)
                counter[0] += 1
                seq = b"%d" % counter[0]
                assert self.transport is not None
                waiting[seq] = (self.transport, fields[1], user)
                if LOG:
                    started[seq] = time.monotonic()
                if not queue:
                    loop.call_soon(flush)
                queue.append(seq + b"\t" + user + b"\t" + password + b"\n")

    await loop.create_server(Client, sock=listener, backlog=1024)
    await asyncio.sleep(seconds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("socket")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--fronts", type=int, default=1)
    p.add_argument(
        "--with",
        dest="extras",
        default="",
        help="comma-separated: checks (parameters, addresses, names, escaping), log (auth line)",
    )
    args = p.parse_args()
    global CHECKS, LOG
    extras = set(filter(None, args.extras.split(",")))
    CHECKS, LOG = "checks" in extras, "log" in extras
    if os.path.exists(args.socket):
        os.unlink(args.socket)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(args.socket)
    listener.listen(1024)
    pairs = [socket.socketpair() for _ in range(args.fronts)]
    children = []
    pid = os.fork()
    if pid == 0:
        uvloop.run(verifier([theirs for _, theirs in pairs], args.seconds))
        os._exit(0)
    children.append(pid)
    for ours, _ in pairs:
        pid = os.fork()
        if pid == 0:
            uvloop.run(front(listener, ours, args.seconds))
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    os.unlink(args.socket)


if __name__ == "__main__":
    main()
