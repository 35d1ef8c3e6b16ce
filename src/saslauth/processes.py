"""Child processes of the master: forking with a clean slate and dropping privileges."""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

from saslauth.errors import ConfigError
from saslauth.hardening import no_core_dumps
from saslauth.logs import set_process_name

log = logging.getLogger("saslauth")


@dataclass(frozen=True, slots=True)
class Account:
    uid: int
    gid: int
    groups: tuple[int, ...]


def account(name: str, key: str, *, keep_groups: bool) -> Account:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError([("config", 1, key, f"no such user {name!r}")]) from None
    groups = tuple(os.getgrouplist(name, entry.pw_gid)) if keep_groups else ()
    return Account(entry.pw_uid, entry.pw_gid, groups)


def fork_child(
    name: str, keep: list[socket.socket], who: Account | None, body: Callable[[], int]
) -> int:
    """Fork a child that keeps only ``keep`` (and stdio), runs as ``who`` and exits with body()."""
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # the verifier installs its own (flush)
        signal.set_wakeup_fd(-1)
        keep_fds = {s.fileno() for s in keep} | {0, 1, 2}
        _close_except(keep_fds)
        set_process_name(name)
        if who is not None:
            drop_privileges(who)
        no_core_dumps()  # after the drop: a credential change resets the dumpable flag
        code = body()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        if not isinstance(exc.code, int | None):
            print(exc.code, file=sys.stderr)
    except BaseException:
        log.exception("%s crashed", name)
    finally:
        logging.shutdown()
        os._exit(code)
    raise AssertionError("unreachable")


def drop_privileges(who: Account) -> None:
    """setgroups, setgid, setuid — in that order, or the later calls would be refused."""
    os.setgroups(list(who.groups))
    os.setgid(who.gid)
    os.setuid(who.uid)


def _close_except(keep: set[int]) -> None:
    for fd in sorted(int(name) for name in os.listdir("/proc/self/fd")):
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)



def status_text(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"
