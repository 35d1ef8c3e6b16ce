"""Listening sockets: taken over from systemd (socket activation) or bound by the master.

Each ``listen:`` entry first looks for a socket systemd passed (``LISTEN_FDS``) with the same
``name`` (``FileDescriptorName=``) or the same path / address; only when there is none does
the master bind one itself.  Inherited sockets keep the owner and mode the socket unit gave
them, and their path is never unlinked by us, so it exists across restarts of the daemon.
"""

from __future__ import annotations

import grp
import ipaddress
import logging
import os
import pwd
import socket
import stat
from pathlib import Path

from saslauth.config import Config, TcpListener, UnixListener
from saslauth.front import ListenerInfo
from saslauth.systemd import Inherited

log = logging.getLogger("saslauth")

Bound = list[tuple[socket.socket, ListenerInfo]]


def _unix_listener(item: UnixListener, base: Path) -> socket.socket:
    path = (base / item.path) if not os.path.isabs(item.path) else Path(item.path)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise OSError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # a stale socket from an earlier run
        else:
            raise OSError(f"{path}: another server is listening there")
        finally:
            probe.close()
    if not path.parent.is_dir():
        # Like Dovecot's base_dir: a missing run directory is made (0755: the socket's own mode
        # decides who may connect), so a fresh install or a tmpfs /run works the first time.
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        log.info("created directory %s for listener %s", path.parent, path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    finally:
        os.umask(old)
    uid = pwd.getpwnam(item.user).pw_uid if item.user else -1
    gid = grp.getgrnam(item.group).gr_gid if item.group else -1
    if (uid, gid) != (-1, -1):
        os.chown(path, uid, gid)
    os.chmod(path, item.mode_bits)
    sock.listen(1024)
    return sock


def _tcp_listener(item: TcpListener) -> socket.socket:
    host, port = item.host_port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {item.address}: {exc.strerror or exc}") from None
    sock.listen(1024)
    if not ipaddress.ip_address(host).is_loopback:
        log.warning(
            "TCP listener %s is not on loopback: Postfix talks to it without TLS, so only "
            "the allow list (%s) protects it",
            item.address,
            ", ".join(map(str, item.allow)),
        )
    return sock


def _matches(item: UnixListener | TcpListener, inherited: Inherited) -> bool:
    if item.name is not None and inherited.name == item.name:
        return True
    if isinstance(item, UnixListener):
        return os.path.normpath(inherited.address) == os.path.normpath(item.path)
    host, port = item.host_port
    wanted = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return inherited.address == wanted


def _check_kind(item: UnixListener | TcpListener, inherited: Inherited) -> None:
    unix = inherited.sock.family == socket.AF_UNIX
    if unix != isinstance(item, UnixListener) or inherited.sock.type != socket.SOCK_STREAM:
        raise OSError(
            f"socket {inherited.name!r} ({inherited.address}) passed by systemd does not fit "
            f"listener {item.name or getattr(item, 'path', '') or item}: "
            "need a stream socket of the same kind (ListenStream= in the .socket unit)"
        )


def bind_all(config: Config, base: Path, inherited: list[Inherited] | None = None) -> Bound:
    """Sockets for every ``listen:`` entry, inherited ones first; unused inherited are closed."""
    remaining = list(inherited or [])
    bound: Bound = []
    for item in config.listen:
        match = next((inh for inh in remaining if _matches(item, inh)), None)
        if isinstance(item, UnixListener):
            info = ListenerInfo(item.name or item.path, None)
        else:
            info = ListenerInfo(item.name or item.address, item.allow)
        if match is not None:
            remaining.remove(match)
            _check_kind(item, match)
            log.info(
                "listener %s: using socket %r (%s) passed by systemd",
                info.label, match.name, match.address,
            )  # fmt: skip
            bound.append((match.sock, info))
        elif isinstance(item, UnixListener):
            bound.append((_unix_listener(item, base), info))
        else:
            bound.append((_tcp_listener(item), info))
    for extra in remaining:
        log.warning(
            "systemd passed socket %r (%s) that no listen: entry names or matches; closing it",
            extra.name, extra.address,
        )  # fmt: skip
        extra.sock.close()
    return bound
