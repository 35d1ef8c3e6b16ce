"""Keep secrets out of core dumps and away from debuggers.

Every saslauth process holds passwords in memory for a moment.  A core file would write them to
disk, and a process of the same user could read them with ptrace.  So each process sets its
core size limit to zero and marks itself not dumpable (prctl PR_SET_DUMPABLE), which also
refuses ptrace from anyone but root and makes /proc/PID files root-owned.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import resource

log = logging.getLogger("saslauth")

_PR_SET_DUMPABLE = 4


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()  # loaded while the installation is still readable (before any privilege drop)


def no_core_dumps() -> bool:
    """Forbid core dumps and ptrace for this process; True when both took effect.

    Call it again after a setuid(): the kernel resets the dumpable flag on a credential change.
    """
    ok = True
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError):
        ok = False
    if _LIBC is None or _LIBC.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        ok = False
    if not ok:
        log.warning("could not disable core dumps for this process")
    return ok


def freeze_startup_objects() -> None:
    """Move every object alive now (imported modules, configuration) out of the cyclic garbage
    collector's reach: its full collections then scan only what serving creates, not tens of
    thousands of start-up objects each time (a pause of milliseconds, every few thousand
    requests).  The objects still live and are freed normally; only the cycle scan skips them.
    """
    gc.collect()
    gc.freeze()
