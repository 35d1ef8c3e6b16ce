"""What a SIGHUP reload changes, and how the new settings reach the front process.

The master re-reads the file; a file with errors changes nothing (each error is logged as
``FILE:LINE: key: message``).  A good file starts a new verifier child with the new passdb and
verifier settings, and the front applies :class:`FrontSettings` to connections accepted from
then on (open connections keep the mechanisms they were greeted with).  ``listen:`` and
``user:`` need a restart: the listeners stay as they are, so the socket never goes away.

The front settings travel as JSON in a memfd passed with the ``RELOAD`` control message
(plain data, never pickle; no size limit of a control message).
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict

from saslauth.config import Config, Duration, UsernameSettings

RESTART_ONLY = ("listen", "user", "fronts", "pin_fronts")


class FrontSettings(BaseModel):
    """The part of the configuration the front process applies on a reload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mechanisms: tuple[str, ...]
    username: UsernameSettings
    failure_delay: Duration
    tempfail: Literal["fail", "disconnect"]
    log_level: Literal["debug", "info", "warning", "error"]
    auth_log: Literal["all", "failures"]

    def apply(self, config: Config) -> Config:
        keys = type(self).model_fields
        return config.model_copy(update={key: getattr(self, key) for key in keys})


def merge(old: Config, new: Config) -> tuple[Config, list[str]]:
    """The configuration that takes effect, and a note for every key that needs a restart."""
    notes = [
        f"{key}: changed, takes effect after a restart (keeping the running value)"
        for key in RESTART_ONLY
        if getattr(old, key) != getattr(new, key)
    ]
    return new.model_copy(update={key: getattr(old, key) for key in RESTART_ONLY}), notes


def settings_fd(config: Config) -> int:
    """A read-only memfd holding the front's new settings, positioned at the start."""
    data = FrontSettings.model_validate(
        {key: getattr(config, key) for key in FrontSettings.model_fields}
    ).model_dump_json()
    fd = os.memfd_create("saslauth-reload", os.MFD_CLOEXEC)
    os.write(fd, data.encode())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def read_settings(fd: int) -> FrontSettings:
    with os.fdopen(fd, "rb") as handle:
        return FrontSettings.model_validate_json(handle.read())
