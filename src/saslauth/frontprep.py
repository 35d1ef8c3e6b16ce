"""Preparing a front process: its session settings from the configuration, the imports it
needs before it drops its privileges, the check that it cannot regain them, and its process
limits.  Everything here runs once, before the front serves (see :func:`saslauth.front.run_front`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource

from saslauth import loops
from saslauth.config import Config
from saslauth.limits.limiter import limiter_for
from saslauth.sessionsettings import SessionSettings
from saslauth.usernames import UsernamePolicy


def session_settings(config: Config) -> SessionSettings:
    usernames = config.username
    policy = UsernamePolicy(
        lowercase=usernames.lowercase,
        allowed_chars=frozenset(usernames.allowed_chars),
        default_domain=usernames.default_domain,
        max_length=usernames.max_length,
        saslprep=usernames.saslprep,
        utf8_passwords=usernames.utf8_passwords,
    )
    return SessionSettings.create(
        config.mechanisms,
        policy,
        failure_delay=config.failure_delay,
        tempfail=config.tempfail,
        spid=os.getpid(),
        limiter=limiter_for(config.limits, config.failure_delay),
        log_successes=config.auth_log == "all",
    )


def preload(config: Config) -> None:
    """Import now what the front would otherwise import lazily after dropping privileges.

    An unprivileged front may be unable to read the installation (a virtualenv under /root),
    so every module it needs, codecs included, must be loaded while it can still read them.
    """
    import encodings.ascii
    import encodings.latin_1
    import encodings.utf_8  # noqa: F401

    session_settings(config)
    loops.loop_factory(config.event_loop)  # imports uvloop, if it is to be used


def check_unprivileged() -> None:
    """Refuse to serve if this process is, or could become again, root."""
    if os.getuid() == 0 or os.geteuid() == 0 or 0 in os.getresuid():
        raise SystemExit("front: still root after the privilege drop; refusing to run")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise SystemExit("front: could regain root; refusing to run")


def lean_logging() -> None:
    """Skip what our log format never shows: the caller's source line (a stack walk per
    record, see the logging docs' "Optimization"), thread and multiprocessing names."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False


def raise_nofile_limit() -> None:
    """Raise the soft RLIMIT_NOFILE to the hard limit: one descriptor per client connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
