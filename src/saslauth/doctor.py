"""``saslauth doctor``: is Postfix set up to reach saslauth?  One verdict per check, and a fix.

For every smtpd service in master.cf it works out the socket that smtpd will really connect
to (chroot and ``-o`` overrides included, see :mod:`saslauth.postfixconf`), then checks: SASL
type ``dovecot``; the path exists, is a socket and something listens on it; Postfix's
``mail_owner`` may connect (search permission on every directory, write on the socket); the
server greets with a Dovecot handshake; and, with ``-u``, a test login.
"""

from __future__ import annotations

import argparse
import getpass
import grp
import os
import pwd
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path

from saslauth import postfixconf
from saslauth.postfixconf import PostfixView, SmtpdService


@dataclass
class Report:
    failures: int = 0
    lines: list[str] = field(default_factory=list)

    def ok(self, text: str) -> None:
        self.lines.append(f"ok    {text}")

    def fail(self, text: str, fix: str) -> None:
        self.failures += 1
        self.lines.append(f"FAIL  {text}")
        self.lines.append(f"      fix: {fix}")


def _mode(st: os.stat_result) -> str:
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"mode {stat.S_IMODE(st.st_mode):04o}, owner {owner}:{group}"


def _allowed(st: os.stat_result, uid: int, gids: set[int], bit: int) -> bool:
    """Would ``uid`` with groups ``gids`` get permission ``bit`` (4 r, 2 w, 1 x)?"""
    if uid == 0:
        return True
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid == uid:
        return bool(mode & (bit << 6))
    if st.st_gid in gids:
        return bool(mode & (bit << 3))
    return bool(mode & bit)


def _permissions(path: str, user: str) -> tuple[str, str] | None:
    """Why ``user`` cannot connect to the socket ``path``, with a fix; None if it can."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return f"mail_owner {user!r} is not a user on this system", "check postconf mail_owner"
    gids = set(os.getgrouplist(user, entry.pw_gid))
    parents = list(reversed(Path(path).parents))
    for directory in parents:
        st = directory.stat()
        if not _allowed(st, entry.pw_uid, gids, 1):
            return (
                f"user {user} cannot reach {path}: directory {directory} is {_mode(st)} "
                "(no search permission for it)",
                f"chmod o+x {directory}, or put the socket in a directory {user} can enter "
                "(Postfix's private/ is the usual place)",
            )
    st = os.stat(path)
    if not _allowed(st, entry.pw_uid, gids, 2):
        return (
            f"user {user} may not connect to {path}: the socket is {_mode(st)} "
            "(connecting needs write permission)",
            f'in saslauth.yaml set listen: user: {user}, group: {user}, mode: "0660" '
            f"(with socket activation: SocketUser={user}, SocketMode=0660 in saslauth.socket)",
        )
    return None


def _handshake(report: Report, where: str, address: str) -> None:
    from saslauth.testclient import Trouble, handshake

    try:
        lines = handshake(address)
    except Trouble as exc:
        report.fail(
            f"{where}: no Dovecot auth greeting: {exc}",
            "is it saslauth (or Dovecot's auth client socket) listening there? "
            "check: saslauth-test -s PATH -u USER",
        )
        return
    version = next((line for line in lines if line[0] == b"VERSION"), None)
    mechs = [line[1].decode(errors="replace") for line in lines if line[0] == b"MECH"]
    if version is None or version[1:2] != [b"1"] or not mechs:
        report.fail(
            f"{where}: the greeting is not a Dovecot auth handshake (VERSION 1 and MECH lines)",
            "point smtpd_sasl_path at saslauth's socket, not another service",
        )
        return
    report.ok(f"{where}: Dovecot handshake, mechanisms {' '.join(mechs)}")


def _login(report: Report, where: str, address: str, user: str, password: str) -> None:
    from saslauth.testclient import Trouble, authenticate

    args = argparse.Namespace(
        socket=address, timeout=10.0, mechanism="PLAIN", user=user, service="smtp",
        rip=None, secured=True,
    )  # fmt: skip
    try:
        code, text = authenticate(args, password.encode())
    except Trouble as exc:
        code, text = 2, str(exc)
    if code == 0:
        report.ok(f"{where}: test login as {user}: {text}")
    else:
        report.fail(f"{where}: test login as {user}: {text}", "check the user's password entry")


def _chroot_hint(service: SmtpdService) -> str | None:
    if service.chroot and os.path.isabs(service.sasl_path.removeprefix("unix:")):
        outside = service.sasl_path.removeprefix("unix:")
        if os.path.exists(outside):
            return outside
    return None


def check_socket(report: Report, view: PostfixView, service: SmtpdService) -> str | None:
    """The socket checks for one service; the address to greet on, or None after a FAIL."""
    where = f"{service.name}: {service.socket}"
    outside = _chroot_hint(service)
    if outside is not None and not os.path.exists(service.socket):
        report.fail(
            f"{service.name} runs chrooted in {view.queue_directory}, so it looks for "
            f"{service.socket}; the socket {outside} is outside the chroot",
            f"listen on {view.queue_directory}/private/auth and set smtpd_sasl_path = "
            f"private/auth, or turn the chroot off: postconf -F '{service.name}/chroot = n'",
        )
        return None
    try:
        st = os.lstat(service.socket)
    except FileNotFoundError:
        report.fail(
            f"{where} does not exist (smtpd_sasl_path = {service.sasl_path}): smtpd will "
            "exit with 'no SASL authentication mechanisms'",
            "make saslauth listen there (listen: path: in saslauth.yaml, or ListenStream= in "
            "saslauth.socket), or set smtpd_sasl_path to the socket saslauth listens on",
        )
        return None
    except OSError as exc:
        report.fail(f"{where}: {exc.strerror}", "check the directories on the way")
        return None
    if not stat.S_ISSOCK(st.st_mode):
        report.fail(f"{where} is not a socket", "point smtpd_sasl_path at saslauth's socket")
        return None
    report.ok(f"{where} exists and is a socket")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(5)
            probe.connect(service.socket)
    except OSError as exc:
        report.fail(
            f"{where}: nothing is listening ({exc.strerror}): a stale socket",
            "start saslauth: systemctl start saslauth.socket saslauth.service",
        )
        return None
    problem = _permissions(service.socket, view.mail_owner)
    if problem is not None:
        report.fail(*problem)
        return None
    report.ok(f"{where}: user {view.mail_owner} may connect")
    return service.socket


def diagnose(view: PostfixView, user: str | None = None, password: str | None = None) -> Report:
    report = Report()
    enabled = [s for s in view.services if s.sasl_enabled]
    if not enabled:
        report.fail(
            "no smtpd service has smtpd_sasl_auth_enable = yes: Postfix offers no AUTH",
            "add -o smtpd_sasl_auth_enable=yes to the submission service in master.cf",
        )
    seen: set[str] = set()
    for service in enabled:
        if service.sasl_type != "dovecot":
            report.fail(
                f"{service.name}: smtpd_sasl_type = {service.sasl_type or '(empty)'}; "
                "saslauth speaks the Dovecot protocol",
                "postconf -e smtpd_sasl_type=dovecot",
            )
            continue
        key = service.socket or service.sasl_path
        if key in seen:
            report.ok(f"{service.name}: same socket as above ({key})")
            continue
        seen.add(key)
        if service.sasl_path.startswith("inet:"):
            address: str | None = service.sasl_path[5:]
        else:
            address = check_socket(report, view, service)
        if address is None:
            continue
        where = f"{service.name}: {address}"
        _handshake(report, where, address)
        if user is not None:
            _login(report, where, address, user, password or "")
    return report


def run(args: argparse.Namespace) -> int:
    try:
        view = postfixconf.read(args.postfix_config)
    except postfixconf.PostconfError as exc:
        print(f"FAIL  {exc}\n      fix: install Postfix, or pass --postfix-config DIR")
        return 1
    password = args.password
    if args.user is not None and password is None:
        password = getpass.getpass(f"Password for {args.user}: ")
    report = diagnose(view, args.user, password)
    print("\n".join(report.lines))
    print(f"{report.failures} problem(s) found" if report.failures else "no problems found")
    return 1 if report.failures else 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = sub.add_parser("doctor", help="check that Postfix can reach saslauth")
    doctor.add_argument("--postfix-config", metavar="DIR", help="Postfix config directory")
    doctor.add_argument("-u", "--user", help="also try a login as this user")
    doctor.add_argument("-p", "--password", help="its password (visible in ps: prefer the prompt)")
    doctor.set_defaults(func=run)
