"""systemd integration with the standard library only: sd_notify and socket activation.

``notify`` sends one datagram to ``$NOTIFY_SOCKET`` (sd_notify(3); a leading ``@`` names an
abstract socket).  ``listen_fds`` takes the sockets systemd passed (sd_listen_fds(3)): they are
``3 .. 3+LISTEN_FDS-1``, valid only when ``LISTEN_PID`` is our pid, named by
``LISTEN_FDNAMES`` (colon-separated).  Both are no-ops outside systemd.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from typing import Final

SD_LISTEN_FDS_START: Final = 3


def notify(*fields: str) -> bool:
    """Send ``FIELD=value`` lines to the service manager; False when there is none."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    target = "\0" + address[1:] if address[0] == "@" else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(fields).encode(), target)
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WatchdogSec``), or None when off."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


@dataclass(frozen=True, slots=True)
class Inherited:
    """One socket passed by systemd: its name (``FileDescriptorName=``) and local address."""

    sock: socket.socket
    name: str
    address: str  # the UNIX path, or HOST:PORT for TCP ("" when unknown)


def listen_fds(*, unset: bool = True) -> list[Inherited]:
    """The sockets passed by systemd for this process, marked close-on-exec.

    With ``unset`` the ``LISTEN_*`` variables are removed, so child processes do not take
    them for their own.
    """
    pid, count = os.environ.get("LISTEN_PID", ""), os.environ.get("LISTEN_FDS", "")
    names = os.environ.get("LISTEN_FDNAMES", "")
    if unset:
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(key, None)
    if not pid.isdigit() or int(pid) != os.getpid() or not count.isdigit():
        return []
    labels = names.split(":") if names else []
    found = []
    for index in range(int(count)):
        fd = SD_LISTEN_FDS_START + index
        os.set_inheritable(fd, False)
        sock = socket.socket(fileno=fd)
        label = labels[index] if index < len(labels) else "unknown"
        found.append(Inherited(sock, label, _address(sock)))
    return found


def _address(sock: socket.socket) -> str:
    with contextlib.suppress(OSError):
        name = sock.getsockname()
        if isinstance(name, str):
            return name
        if isinstance(name, bytes):
            return os.fsdecode(name)
        if isinstance(name, tuple):
            host = str(name[0])
            return f"[{host}]:{name[1]}" if ":" in host else f"{host}:{name[1]}"
    return ""
