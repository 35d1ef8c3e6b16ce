"""``saslauth-test``: one authentication over the real protocol, like ``testsaslauthd``.

Exit codes: 0 OK, 1 authentication failed, 2 temporary failure, connection problem or bad usage.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import os
import socket
import sys

from saslauth import wire

EXIT_OK, EXIT_FAIL, EXIT_TEMP = 0, 1, 2


class Trouble(Exception):
    """A connection or protocol problem: exit 2."""


def _connect(address: str, timeout: float) -> socket.socket:
    if address.startswith("/") or ":" not in address:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: str | tuple[str, int] = address
    else:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        target = (host, int(port))
    sock.settimeout(timeout)
    try:
        sock.connect(target)
    except OSError as exc:
        raise Trouble(f"cannot connect to {address}: {exc.strerror or exc}") from None
    return sock


class _Lines:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def read(self) -> list[bytes]:
        while b"\n" not in self.buffer:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise Trouble("timed out waiting for the server") from None
            if not data:
                raise Trouble("the server closed the connection")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.split(b"\t")


def _greet(sock: socket.socket, lines: _Lines) -> list[list[bytes]]:
    """Send our VERSION and CPID; the server's greeting lines, split, up to its DONE."""
    sock.sendall(b"VERSION\t1\t2\nCPID\t%d\n" % os.getpid())
    greeting = []
    while True:
        greeting.append(lines.read())
        if greeting[-1][0] == b"DONE":
            return greeting


def handshake(address: str, timeout: float = 5.0) -> list[list[bytes]]:
    """Connect, do the client handshake and hang up; the greeting.  Raises Trouble."""
    sock = _connect(address, timeout)
    try:
        return _greet(sock, _Lines(sock))
    except OSError as exc:
        raise Trouble(f"connection to {address} lost: {exc.strerror or exc}") from None
    finally:
        sock.close()


def authenticate(args: argparse.Namespace, password: bytes) -> tuple[int, str]:
    sock = _connect(args.socket, args.timeout)
    lines = _Lines(sock)
    try:
        greeting = _greet(sock, lines)
        mechs = [f[1].decode(errors="replace").upper() for f in greeting if f[0] == b"MECH"]
        mech = args.mechanism.upper()
        if mech not in mechs:
            raise Trouble(f"the server does not offer {mech} (offers: {' '.join(mechs)})")
        user = args.user.encode()
        request = [b"AUTH", b"1", mech.encode(), b"service=" + wire.encode_text(args.service)]
        if args.rip:
            request.append(b"rip=" + args.rip.encode())
        if args.secured:
            request.append(b"secured")
        answers = [user, password] if mech == "LOGIN" else [b"\0" + user + b"\0" + password]
        request.append(b"resp=" + base64.b64encode(answers.pop(0)))
        sock.sendall(wire.join_fields(request))
        while True:
            fields = lines.read()
            if len(fields) < 2 or fields[1] != b"1":
                continue
            if fields[0] == b"CONT":
                data = base64.b64encode(answers.pop(0)) if answers else b""
                sock.sendall(b"CONT\t1\t" + data + b"\n")
                continue
            text = " ".join(wire.decode_text(wire.unescape(f)) for f in fields[2:])
            if fields[0] == b"OK":
                return EXIT_OK, f"OK {text}".rstrip()
            if fields[0] == b"FAIL":
                temp = b"code=temp_fail" in fields or b"temp" in fields
                return (EXIT_TEMP if temp else EXIT_FAIL), f"FAIL {text}".rstrip()
    except OSError as exc:  # reset, broken pipe: the server went away (Postfix says 454)
        raise Trouble(f"connection to {args.socket} lost: {exc.strerror or exc}") from None
    finally:
        sock.close()


def _socket_from_config(path: str) -> str:
    from saslauth import cli, config

    cfg = cli.load(path)
    first = cfg.listen[0]
    return first.path if isinstance(first, config.UnixListener) else first.address


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="saslauth-test", description=__doc__)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("-c", "--config", help="use the first listener of this config file")
    where.add_argument("-s", "--socket", help="UNIX socket path or HOST:PORT")
    parser.add_argument("-u", "--user", required=True)
    parser.add_argument("-p", "--password", help="visible in ps; without it you are prompted")
    parser.add_argument(
        "-m", "--mechanism", default="PLAIN", choices=["PLAIN", "LOGIN", "plain", "login"]
    )
    parser.add_argument("--service", default="smtp")
    parser.add_argument("--rip", help="remote IP to report to the server")
    parser.add_argument("--secured", action="store_true", help="say the client uses TLS")
    parser.add_argument("--timeout", type=float, default=15.0)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_TEMP if exc.code else EXIT_OK
    try:
        if not args.socket:
            from saslauth.errors import ConfigError

            try:
                args.socket = _socket_from_config(args.config or "/etc/saslauth/saslauth.yaml")
            except ConfigError as exc:
                print(exc.render(), file=sys.stderr)
                return EXIT_TEMP
        if args.password is not None:
            password = os.fsencode(args.password)
        elif sys.stdin.isatty():
            password = os.fsencode(getpass.getpass("Password: "))
        else:
            password = os.fsencode(sys.stdin.readline().rstrip("\r\n"))
        code, text = authenticate(args, password)
    except Trouble as exc:
        print(f"saslauth-test: {exc}", file=sys.stderr)
        return EXIT_TEMP
    print(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
