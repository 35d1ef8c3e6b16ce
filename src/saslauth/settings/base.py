"""What every part of the configuration is built from: strict models, durations, driver base.

Kept apart from :mod:`saslauth.config` so each passdb driver's settings can live in a module of
its own (:mod:`saslauth.settings`) without import cycles.  Pydantic only: the front process
imports this, so no driver library may be imported here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("a duration like 2s, 500ms, 10m or 1d")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2)]
    raise ValueError("a duration like 2s, 500ms, 10m or 1d")


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
Window = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]  # a period: never 0


class Model(BaseModel):
    """Unknown keys are errors; a parsed configuration never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def absolute(path: str, base: Path) -> str:
    return path if os.path.isabs(path) else str((base / path).resolve())


class DriverSettings(Model):
    """Base of every passdb driver's settings: ``driver`` is the union's tag.

    A driver adds its keys in a subclass, lists it in :data:`PassdbSettings` and its factory in
    :mod:`saslauth.passdb.registry`.  ``resolve`` makes relative paths relative to the config
    file; ``warnings`` lists problems ``check-config`` reports without failing.
    """

    driver: str
    name: str | None = None

    def resolve(self, base: Path) -> DriverSettings:
        return self

    def warnings(self) -> list[str]:
        return []

    @property
    def label(self) -> str:
        return self.name or self.driver
