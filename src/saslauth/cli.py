"""``saslauth``: serve, check-config, hash, flush."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from pathlib import Path

from saslauth import __version__, config, hostcheck, logs
from saslauth.errors import ConfigError, SchemeError

DEFAULT_CONFIG = "/etc/saslauth/saslauth.yaml"


def _resolve(cfg: config.Config, base: Path) -> config.Config:
    """Relative paths in the config are relative to the config file's directory."""

    def fix(path: str) -> str:
        return path if os.path.isabs(path) else str((base / path).resolve())

    listen = tuple(
        item.model_copy(update={"path": fix(item.path)})
        if isinstance(item, config.UnixListener)
        else item
        for item in cfg.listen
    )
    passdb = tuple(p.resolve(base) for p in cfg.passdb)
    return cfg.model_copy(update={"listen": listen, "passdb": passdb})


def load(path: str) -> config.Config:
    cfg = config.load(path)
    return _resolve(cfg, Path(path).resolve().parent)


def cmd_serve(args: argparse.Namespace) -> int:
    from saslauth.master import Master

    logs.setup("info", "saslauth")
    try:
        cfg = load(args.config)
        hostcheck.check(cfg, args.config)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return 1
    logs.setup(cfg.log_level, "saslauth")
    try:
        master = Master(cfg, Path(args.config).resolve().parent, lambda: load(args.config))
        return master.run()
    except ConfigError as exc:
        print(f"{args.config}: " + exc.render(), file=sys.stderr)
        return 1
    except OSError as exc:
        logging.getLogger("saslauth").error("cannot start: %s", exc)
        return 1


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        cfg = load(args.config)
        hostcheck.check(cfg, args.config)
    except ConfigError as exc:
        print(exc.render())
        return 1
    warnings = [line for p in cfg.passdb for line in p.warnings()]
    for line in warnings:
        print(f"warning: {line}")
    print(
        f"{args.config}: OK: {len(cfg.listen)} listener(s), {len(cfg.passdb)} passdb(s), "
        f"mechanisms {' '.join(cfg.mechanisms)}, {cfg.front_count} front(s)"
    )
    return 0


def _read_password(args: argparse.Namespace) -> bytes:
    if args.password is not None:
        return os.fsencode(args.password)
    if sys.stdin.isatty():
        first = getpass.getpass("Enter new password: ")
        if getpass.getpass("Retype new password: ") != first:
            raise SystemExit("Passwords don't match")
        return os.fsencode(first)
    return os.fsencode(sys.stdin.readline().rstrip("\r\n"))


def cmd_hash(args: argparse.Namespace) -> int:
    from saslauth import schemes

    password = _read_password(args)
    try:
        print(schemes.generate(args.scheme, password, user=args.user or "", rounds=args.rounds))
    except SchemeError as exc:
        print(f"saslauth hash: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_flush(args: argparse.Namespace) -> int:
    from saslauth.flush import flush

    users = [u.lower() if args.lowercase else u for u in args.users]
    try:
        print(flush(users, args.pid))
    except OSError as exc:  # not allowed to signal the daemon or to write its run directory
        print(f"saslauth flush: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="saslauth", description=__doc__)
    parser.add_argument("--version", action="version", version=f"saslauth {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the daemon in the foreground")
    serve.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    serve.set_defaults(func=cmd_serve)
    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("-c", "--config", default=DEFAULT_CONFIG)
    check.set_defaults(func=cmd_check_config)
    hashing = sub.add_parser("hash", help="hash a password like doveadm pw")
    hashing.add_argument("-s", "--scheme", default="SHA512-CRYPT")
    hashing.add_argument("-p", "--password", help="the password (visible in ps: prefer the prompt)")
    hashing.add_argument("-u", "--user", help="user name (for DIGEST-MD5)")
    hashing.add_argument("-r", "--rounds", type=int)
    hashing.set_defaults(func=cmd_hash)
    from saslauth import doctor

    doctor.add_parser(sub)
    flushing = sub.add_parser("flush", help="empty the running daemon's verification cache")
    flushing.add_argument("users", nargs="*", metavar="USER", help="only these users")
    flushing.add_argument("--pid", type=int, help="the master's pid (default: the only one)")
    flushing.add_argument(
        "--no-lowercase",
        dest="lowercase",
        action="store_false",
        help="do not lower-case USER (when username.lowercase is off)",
    )
    flushing.set_defaults(func=cmd_flush)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code
