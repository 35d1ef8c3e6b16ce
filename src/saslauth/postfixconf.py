"""What Postfix's smtpd services will use for SASL, read through ``postconf``.

``postconf -x`` gives main.cf (with ``$name`` expanded), ``postconf -F`` the master.cf fields
(``service/type/chroot = y``), ``postconf -Px`` the per-service ``-o name=value`` overrides.
Each smtpd service's effective socket follows xsasl_dovecot_server.c and master(8): smtpd
runs with ``queue_directory`` as its working directory, and as its root when chrooted, so a
relative path and (when chrooted) an absolute one both resolve under ``queue_directory``.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from saslauth.errors import SaslauthError

MAIN = ("queue_directory", "mail_owner", "smtpd_sasl_type", "smtpd_sasl_path",
        "smtpd_sasl_auth_enable")  # fmt: skip


class PostconfError(SaslauthError):
    """postconf is missing or failed."""


@dataclass(frozen=True, slots=True)
class SmtpdService:
    name: str  # "submission/inet", as postconf names it
    chroot: bool
    sasl_enabled: bool
    sasl_type: str
    sasl_path: str  # as configured: "private/auth", "/run/x", "inet:127.0.0.1:12345"
    socket: str  # the path smtpd really connects to, seen from outside any chroot ("" for inet)


@dataclass(frozen=True, slots=True)
class PostfixView:
    queue_directory: str
    mail_owner: str
    services: tuple[SmtpdService, ...]


def _postconf(config_dir: str | None, *args: str) -> dict[str, str]:
    command = ["postconf", *(["-c", config_dir] if config_dir else []), *args]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PostconfError(f"cannot run postconf: {exc}") from None
    if proc.returncode != 0:
        raise PostconfError(f"{' '.join(command)} failed: {proc.stderr.strip()}")
    values = {}
    for line in proc.stdout.splitlines():
        name, sep, value = line.partition(" = ")
        if sep:
            values[name.strip()] = value.strip()
        elif line.endswith(" ="):
            values[line[:-2].strip()] = ""
    return values


def effective_socket(sasl_path: str, queue_directory: str, *, chroot: bool) -> str:
    if sasl_path.startswith("inet:"):
        return ""
    path = sasl_path.removeprefix("unix:")
    if not os.path.isabs(path):
        return os.path.normpath(os.path.join(queue_directory, path))
    if chroot:
        return os.path.normpath(queue_directory + "/" + path)
    return path


def _yes(value: str) -> bool:
    return value.lower() in ("yes", "y", "true", "1", "on")


def read(config_dir: str | None = None) -> PostfixView:
    """Read the Postfix configuration in ``config_dir`` (default: Postfix's own)."""
    main = _postconf(config_dir, "-x", *MAIN)
    fields = _postconf(config_dir, "-F")
    params = _postconf(config_dir, "-Px")
    queue = main.get("queue_directory", "/var/spool/postfix")
    services = []
    for key, command in sorted(fields.items()):
        service, _, field = key.rpartition("/")
        if field != "command" or command.split()[:1] != ["smtpd"]:
            continue
        # master(5): the chroot column's default "-" means n since Postfix 3.0
        chroot = _yes(fields.get(f"{service}/chroot", "n"))

        def value(name: str, service: str = service) -> str:
            return params.get(f"{service}/{name}", main.get(name, ""))

        path = value("smtpd_sasl_path")
        services.append(
            SmtpdService(
                name=service,
                chroot=chroot,
                sasl_enabled=_yes(value("smtpd_sasl_auth_enable")),
                sasl_type=value("smtpd_sasl_type"),
                sasl_path=path,
                socket=effective_socket(path, queue, chroot=chroot),
            )
        )
    return PostfixView(queue, main.get("mail_owner", "postfix"), tuple(services))
