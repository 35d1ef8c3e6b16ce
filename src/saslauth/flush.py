"""``saslauth flush [USER]``: empty the running daemon's verification cache.

The command finds the daemon's master (``--pid``, or the only running one: the parent of a
``saslauth-verif`` process), writes what to flush into ``<run dir>/flush-<master pid>`` and
sends the master ``SIGUSR1``, which it forwards to the verifier child.  The verifier reads the
request file (user names, one a line; ``*`` or a missing/empty file: everything), empties it
and flushes.  A bare ``kill -USR1 <master>`` therefore flushes everything.

The run directory is ``$SASLAUTH_RUN_DIR``, else ``/run/saslauth`` (systemd's
``RuntimeDirectory=saslauth``).  The file is created 0600 and handed to the verifier's user.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

ALL = "*"


def run_dir() -> Path:
    return Path(os.environ.get("SASLAUTH_RUN_DIR") or "/run/saslauth")


def request_path(master_pid: int) -> Path:
    return run_dir() / f"flush-{master_pid}"


def take_request(master_pid: int) -> list[str] | None:
    """Read and empty the flush request; the users to flush, or None for everything."""
    path = request_path(master_pid)
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "r+", encoding="utf-8", errors="surrogateescape") as handle:
        text = handle.read(1 << 20)
        handle.seek(0)
        handle.truncate()
    users = [line.strip() for line in text.splitlines() if line.strip()]
    if not users or ALL in users:
        return None
    return users


def _children(ppid: int | None = None) -> list[tuple[int, int]]:
    """(pid, ppid) of every saslauth verifier process (of ``ppid``, if given)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "saslauth-verif":
                continue
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid is None or parent == ppid:
            found.append((int(entry.name), parent))
    return found


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise OSError(f"no Uid in /proc/{pid}/status")


def find_master(pid: int | None) -> tuple[int, int]:
    """(master pid, verifier pid); raises SystemExit with a message when not exactly one."""
    verifiers = _children(pid)
    masters = sorted({parent for _, parent in verifiers})
    if not masters:
        where = f"pid {pid}" if pid is not None else "any process"
        raise SystemExit(f"saslauth flush: no running saslauth verifier under {where}")
    if len(masters) > 1:
        raise SystemExit(
            "saslauth flush: several saslauth daemons run (masters "
            + ", ".join(map(str, masters))
            + "); choose one with --pid"
        )
    verifier = next(v for v, parent in verifiers if parent == masters[0])
    return masters[0], verifier


def flush(users: list[str], pid: int | None) -> str:
    """Ask the daemon to flush ``users`` (empty: everything); returns a line for the operator."""
    master, verifier = find_master(pid)
    path = request_path(master)
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write("\n".join(users or [ALL]) + "\n")
    with contextlib.suppress(PermissionError):  # not root: the verifier runs as us anyway
        os.chown(path, _uid_of(verifier), -1)
    os.kill(master, signal.SIGUSR1)
    what = "users " + ", ".join(users) if users else "all entries"
    return f"asked saslauth (master pid {master}) to flush {what} from its cache"
