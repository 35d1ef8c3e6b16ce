"""Checks of a valid configuration against this host: do the accounts it names exist?

They run where the daemon will run (``serve`` and ``check-config``), as root only: started as
an ordinary user the daemon drops no privileges, so the account names do not matter then.  Each
problem names the file and line of the key, like every other configuration error.
"""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

from saslauth import yamllines
from saslauth.config import Config, UnixListener
from saslauth.errors import ConfigError
from saslauth.yamllines import Lines

_CREATE = "create it with: useradd --system --no-create-home --shell /usr/sbin/nologin {}"


def _lines(path: Path) -> Lines:
    """The file's key lines (none if it cannot be read again: the checks still run)."""
    try:
        return yamllines.read(path.read_text(encoding="utf-8"), str(path))[1]
    except (OSError, UnicodeDecodeError, ConfigError):
        return {}


def problems(cfg: Config, path: str | Path) -> list[tuple[str, int, str, str]]:
    """Every account or group the configuration needs but this host lacks (as root only)."""
    if os.geteuid() != 0:
        return []
    lines = _lines(Path(path))
    found: list[tuple[str, int, str, str]] = []

    def need_user(name: str, key: tuple[str | int, ...], hint: bool) -> None:
        try:
            pwd.getpwnam(name)
        except KeyError:
            text = f"no such user {name!r} on this host"
            found.append((str(path), lines.get(key, 1), ".".join(map(str, key)),
                          f"{text} ({_CREATE.format(name)})" if hint else text))  # fmt: skip

    def need_group(name: str, key: tuple[str | int, ...]) -> None:
        try:
            grp.getgrnam(name)
        except KeyError:
            found.append((str(path), lines.get(key, 1), ".".join(map(str, key)),
                          f"no such group {name!r} on this host"))  # fmt: skip

    need_user(cfg.user, ("user",), hint=True)
    if cfg.verifier.user not in ("root", "0"):
        need_user(cfg.verifier.user, ("verifier", "user"), hint=True)
    for index, item in enumerate(cfg.listen):
        if isinstance(item, UnixListener):
            if item.user:
                need_user(item.user, ("listen", index, "user"), hint=False)
            if item.group:
                need_group(item.group, ("listen", index, "group"))
    return found


def check(cfg: Config, path: str | Path) -> None:
    """Raise ConfigError listing :func:`problems`, if any."""
    found = problems(cfg, path)
    if found:
        raise ConfigError(found)
