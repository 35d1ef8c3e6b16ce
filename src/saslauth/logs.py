"""Logging to stderr: journald priorities under systemd, timestamps on a terminal.

Under systemd (``JOURNAL_STREAM`` set) each line starts with ``<N>`` (sd-daemon(3)) so journald
files it with the right priority.  Secrets never reach this module: callers log user names,
addresses and verdicts only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import time
from collections.abc import Callable

_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


_LEVEL_NAMES = {level: logging.getLevelName(level) for level in _PRIORITY}

# os.getpid() is a system call (glibc no longer caches it); the renderer needs it per line.
_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\n", " ")
        return f"<{_PRIORITY.get(record.levelno, 6)}>{text}"


# The handler setup() installed last, and a renderer that formats a message into exactly the
# line its formatter would write (see :func:`renderer`).
_installed: tuple[logging.Handler, logging.Formatter, Callable[[int, str], str]] | None = None


def setup(level: str, process: str) -> None:
    global _installed
    handler = logging.StreamHandler(sys.stderr)
    render: Callable[[int, str], str]
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter(f"{process}: %(message)s"))
        render = _journal_renderer(process)
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s {process}[%(process)d]: %(message)s")
        )
        render = _plain_renderer(process)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    assert handler.formatter is not None
    _installed = (handler, handler.formatter, render)


def renderer(handler: logging.Handler) -> Callable[[int, str], str] | None:
    """``render(level, message)``: the line ``handler`` would write for a record of ``level``
    with ``message``, terminator included, when ``handler`` is the one :func:`setup` made, with
    its formatter (and no filters: the caller checks that, as they may be added later).

    A LogRecord plus ``Formatter.format`` cost more than all the rest of an authentication in
    the front; its one line per attempt is rendered with this instead (:mod:`saslauth.logbatch`).
    """
    if _installed is None or _installed[0] is not handler or _installed[1] is not handler.formatter:
        return None
    return _installed[2]


def _journal_renderer(process: str) -> Callable[[int, str], str]:
    def render(level: int, message: str) -> str:
        if "\n" in message:
            message = message.replace("\n", " ")
        return f"<{_PRIORITY.get(level, 6)}>{process}: {message}\n"

    return render


_MILLIS = [f",{millis:03d}" for millis in range(1000)]


def _plain_renderer(process: str) -> Callable[[int, str], str]:
    """``%(asctime)s %(levelname)s {process}[%(process)d]: %(message)s`` as logging renders it:
    local time to the second (formatted once per second here), then ``,`` and milliseconds."""
    second = -1
    stamp = ""
    pid = -1
    heads: dict[int, str] = {}  # level -> " LEVEL process[pid]: ", for the pid in ``pid``

    def render(level: int, message: str) -> str:
        nonlocal second, stamp, pid
        now = time.time()
        whole = int(now)
        if whole != second:
            second, stamp = whole, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        if pid != _pid:  # first use, or a fork since
            pid = _pid
            heads.clear()
        head = heads.get(level)
        if head is None:
            head = heads[level] = f" {_LEVEL_NAMES[level]} {process}[{pid}]: "
        return f"{stamp}{_MILLIS[int((now - whole) * 1000)]}{head}{message}\n"

    return render


def set_process_name(name: str) -> None:
    """Set the kernel's process name (``ps -o comm``) so each role is easy to tell apart."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        pr_set_name = 15
        libc.prctl(pr_set_name, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass


def kv(value: object) -> str:
    """A log value: quoted when it has spaces, with control characters made visible."""
    text = str(value)
    if text and text.isprintable() and " " not in text and '"' not in text:
        return text
    return '"' + "".join(_visible(char) for char in text) + '"'


def _visible(char: str) -> str:
    # No codecs here: the front process may no longer be able to import codec modules lazily
    # once it has dropped its privileges (a venv under /root, say).
    if char == '"' or char == "\\":
        return "\\" + char
    if char.isprintable():
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
