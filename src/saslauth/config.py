"""Configuration: YAML parsed once into frozen, validated models.

Every problem is reported as ``FILE:LINE: key: message`` (all of them at once), through
:class:`saslauth.errors.ConfigError`.  Unknown keys are errors.  Durations are written ``2s``,
``500ms``, ``1h``; socket modes must be quoted strings (YAML 1.1 reads ``0660`` as 432).
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from saslauth import yamllines
from saslauth.errors import ConfigError
from saslauth.limits.settings import LimitsSettings
from saslauth.settings.base import DriverSettings, Duration, Model, absolute
from saslauth.settings.imap import ImapSettings
from saslauth.settings.ldap import LdapSettings
from saslauth.settings.passwd_file import PasswdFileSettings
from saslauth.settings.sql import SqlSettings
from saslauth.settings.system import PamSettings, ShadowSettings, SystemAccountSettings
from saslauth.usernames import DEFAULT_ALLOWED_CHARS, DEFAULT_MAX_LENGTH

# Re-exported: drivers and tools import their settings from here.
__all__ = [
    "Config",
    "DriverSettings",
    "Duration",
    "ImapSettings",
    "LdapSettings",
    "Model",
    "PamSettings",
    "PassdbSettings",
    "PasswdFileSettings",
    "ShadowSettings",
    "SqlSettings",
    "SystemAccountSettings",
    "absolute",
    "load",
    "parse",
]


class UsernameSettings(Model):
    lowercase: bool = True
    allowed_chars: str = DEFAULT_ALLOWED_CHARS
    default_domain: str = ""
    max_length: int = Field(default=DEFAULT_MAX_LENGTH, ge=1, le=4096)  # Dovecot: no limit
    saslprep: bool = False  # RFC 4013 on names and passwords (Dovecot does not)
    utf8_passwords: bool = True  # false: accept 8-bit (Latin-1) passwords, as Dovecot does


class UnixListener(Model):
    path: str
    mode: str = "0660"
    user: str | None = None
    group: str | None = None
    name: str | None = None

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: object) -> object:
        if not isinstance(value, str) or not re.fullmatch(r"0?[0-7]{3}", value):
            raise ValueError('an octal mode in quotes, like "0660"')
        return value

    @property
    def mode_bits(self) -> int:
        return int(self.mode, 8)


class TcpListener(Model):
    address: str
    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
        ipaddress.IPv4Network("127.0.0.0/8"),
        ipaddress.IPv6Network("::1/128"),
    )
    name: str | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
            raise ValueError("HOST:PORT, like 127.0.0.1:12345 or [::1]:12345")
        return value

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.address.rpartition(":")
        return host.strip("[]"), int(port)


def _listener_kind(value: Any) -> str:
    return "tcp" if isinstance(value, dict) and "address" in value else "unix"


Listener = Annotated[
    Annotated[UnixListener, Tag("unix")] | Annotated[TcpListener, Tag("tcp")],
    Discriminator(_listener_kind),
]


class VerifierSettings(Model):
    user: str = "root"
    threads: int = Field(default=0, ge=0, le=256)  # 0: one per CPU core
    # Argon2 hashes at once (each takes 32-64 MiB at Dovecot's defaults); others queue.
    argon2_limit: int = Field(default=2, ge=1, le=64)


class CacheSettings(Model):
    """The verification cache (off unless the ``cache`` key is present); see saslauth.cache."""

    ttl: Duration = 300.0  # a right password is remembered this long
    negative_ttl: Duration = 30.0  # a wrong one this long
    size: int = Field(default=10_000, ge=1, le=10_000_000)


MAX_FRONTS = 64
AUTO_FRONTS_MAX = 8  # fronts: auto never starts more (the verifier is one process)

# One entry per driver; the tag is the ``driver`` key.  A new driver: a settings module in
# saslauth/settings/, a member here, a tag below and a line in saslauth/passdb/registry.py.
PassdbSettings = Annotated[
    PasswdFileSettings
    | ShadowSettings
    | PamSettings
    | ImapSettings
    | SqlSettings
    | LdapSettings,
    Field(discriminator="driver"),
]
_DRIVER_TAGS = frozenset({"passwd-file", "shadow", "pam", "imap", "sql", "ldap"})
_UNION_TAGS = _DRIVER_TAGS | {"unix", "tcp"}  # in error locations, but no keys in the file


class Config(Model):
    user: str = "saslauth"
    failure_delay: Duration = 2.0
    tempfail: Literal["fail", "disconnect"] = "fail"
    mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")
    username: UsernameSettings = UsernameSettings()
    listen: tuple[Listener, ...] = Field(min_length=1)
    verifier: VerifierSettings = VerifierSettings()
    cache: CacheSettings | None = None
    passdb: tuple[PassdbSettings, ...] = Field(min_length=1)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # which attempts get an auth: line: failures only (Dovecot's auth_verbose = yes; Postfix
    # logs the sasl_username of a success itself), or all of them (README, "auth_log")
    auth_log: Literal["all", "failures"] = "failures"
    limits: LimitsSettings | None = None  # absent: no limits (README, "Abuse resistance")
    # auto: uvloop when it is installed (the saslauth[uvloop] extra), else asyncio's own loop
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    # front processes sharing the listeners: auto (one per core, 1..8) or 1..64; see front_count
    fronts: int | Literal["auto"] = "auto"
    # each front on a CPU of its own (saslauth.affinity): auto = when each gets its own, leaving
    # a CPU that other work crowds (saslauth.pinwatch); true = always; false = never
    pin_fronts: bool | Literal["auto"] = "auto"

    @field_validator("mechanisms")
    @classmethod
    def _mechanisms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from saslauth.mechanisms import registry

        known = registry()
        names = tuple(name.upper() for name in value)
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(f"unknown mechanism {unknown[0]} (known: {', '.join(known)})")
        if not names:
            raise ValueError("at least one mechanism")
        return names

    @field_validator("failure_delay")
    @classmethod
    def _delay(cls, value: float) -> float:
        if value >= 10:
            raise ValueError("must be under 10s: Postfix gives up on the auth server after 10 s")
        return value

    @field_validator("limits")
    @classmethod
    def _limits(cls, value: LimitsSettings | None, info: ValidationInfo) -> LimitsSettings | None:
        if value is not None and isinstance(delay := info.data.get("failure_delay"), float):
            value.check_failure_delay(delay)
        return value

    @field_validator("fronts", mode="before")
    @classmethod
    def _fronts(cls, value: object, info: ValidationInfo) -> object:
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_FRONTS:
            raise ValueError(f"auto, or a whole number from 1 to {MAX_FRONTS}")
        limits = info.data.get("limits")
        if value > 1 and isinstance(limits, LimitsSettings) and limits.enabled:
            raise ValueError(
                "with limits on, one front only (fronts: 1 or auto): the limiter counts in the "
                "front process's memory, so several fronts would each allow the full budget"
            )
        return value

    @field_validator("pin_fronts", mode="before")
    @classmethod
    def _pin_fronts(cls, value: object) -> object:
        if value == "auto" or isinstance(value, bool):
            return value
        raise ValueError("auto, true or false")

    @property
    def front_count(self) -> int:
        """How many front processes serve: ``auto`` is one per core (1..8), or 1 with limits."""
        if isinstance(self.fronts, int):
            return self.fronts
        if self.limits is not None and self.limits.enabled:
            return 1
        return max(1, min(os.cpu_count() or 1, AUTO_FRONTS_MAX))

    @field_validator("user")
    @classmethod
    def _user(cls, value: str) -> str:
        if value in ("root", "0"):
            raise ValueError("the network-facing process must not run as root")
        return value


# ---- loading ---------------------------------------------------------------------------------

def parse(text: str, filename: str) -> Config:
    """Parse and validate a configuration text; raise ConfigError listing every problem."""
    data, lines = yamllines.read(text, filename)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = []
        errors = exc.errors(include_url=False)
        for error in errors:
            loc = tuple(error["loc"])
            if error["type"] == "too_short" and any(
                len(other["loc"]) > len(loc) and tuple(other["loc"][: len(loc)]) == loc
                for other in errors
            ):
                continue  # a list whose items are all wrong: the items' errors say it better
            line, key = yamllines.locate(loc, lines, _UNION_TAGS)
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "union_tag_invalid" and key.startswith("passdb."):
                ctx = error.get("ctx") or {}
                key += ".driver"
                line = lines.get((*loc, "driver"), line)
                message = (
                    f"unknown driver {ctx.get('tag')!r} (known: {', '.join(sorted(_DRIVER_TAGS))})"
                )
            problems.append((filename, line, key, message))
        raise ConfigError(problems) from None


def load(path: str | Path) -> Config:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([(str(path), 1, "config", f"cannot read: {exc}")]) from None
    return parse(text, str(path))
