"""``driver: passwd-file``: Dovecot's passwd-file format."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from saslauth.settings.base import DriverSettings, absolute


class PasswdFileSettings(DriverSettings):
    driver: Literal["passwd-file"]
    path: str
    default_scheme: str = "CRYPT"

    def resolve(self, base: Path) -> PasswdFileSettings:
        return self.model_copy(update={"path": absolute(self.path, base)})

    def warnings(self) -> list[str]:
        if not os.access(self.path, os.R_OK):
            return [f"passdb {self.path}: not readable by this user (the verifier reads it)"]
        return []

    @property
    def label(self) -> str:
        return self.name or f"passwd-file:{self.path}"
