"""Logging to stderr: journald priorities under systemd, timestamps on a terminal.

Under systemd (``JOURNAL_STREAM`` set) each line starts with ``<N>`` (sd-daemon(3)) so journald
files it with the right priority.  Secrets never reach this module: callers log user names,
addresses and verdicts only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import encodings.unicode_escape  # noqa: F401 - kv() needs it after the privilege drop
import logging
import os
import sys

_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\n", " ")
        return f"<{_PRIORITY.get(record.levelno, 6)}>{text}"


def setup(level: str, process: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter(f"{process}: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s {process}[%(process)d]: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


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
    return '"' + text.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
