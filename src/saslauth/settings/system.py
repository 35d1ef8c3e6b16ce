"""``driver: shadow`` and ``driver: pam``: system accounts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field

from saslauth.settings.base import DriverSettings, Duration, absolute


class SystemAccountSettings(DriverSettings):
    """Keys shared by ``shadow`` and ``pam`` (system accounts; see README "System accounts")."""

    min_uid: int | None = Field(default=1000, ge=0)  # keeps root and daemons from relaying
    max_uid: int | None = Field(default=None, ge=0)
    allow_groups: tuple[str, ...] = ()
    deny_groups: tuple[str, ...] = ()
    strip_domain: bool = False  # user@any.domain -> user
    allowed_domains: tuple[str, ...] = ()  # user@one.of.these -> user; other domains: unknown


class ShadowSettings(SystemAccountSettings):
    driver: Literal["shadow"]
    shadow_file: str = "/etc/shadow"
    passwd_file: str = "/etc/passwd"  # noqa: S105 - a path
    group_file: str = "/etc/group"

    def resolve(self, base: Path) -> ShadowSettings:
        keys = ("shadow_file", "passwd_file", "group_file")
        return self.model_copy(update={k: absolute(getattr(self, k), base) for k in keys})

    def warnings(self) -> list[str]:
        if not os.access(self.shadow_file, os.R_OK):
            return [
                f"passdb shadow: {self.shadow_file} is not readable by this user (the verifier"
                " reads it: run it as root or as a verifier.user in group shadow)"
            ]
        return []


class PamSettings(SystemAccountSettings):
    driver: Literal["pam"]
    service: str = Field(default="smtp", pattern=r"^[A-Za-z0-9._-]+$")
    threads: int = Field(default=8, ge=1, le=256)  # PAM calls block (about 2 s on a failure)
    timeout: Duration = 8.0

    def warnings(self) -> list[str]:
        if not os.path.exists(f"/etc/pam.d/{self.service}"):
            return [f"passdb pam: /etc/pam.d/{self.service} is missing (PAM uses 'other')"]
        return []

    @property
    def label(self) -> str:
        return self.name or f"pam:{self.service}"
