"""The ``limits:`` section of the configuration (pydantic only; imported by ``config.py``)."""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from saslauth.settings.base import Duration, Window

POSTFIX_TIMEOUT = 10.0  # Postfix drops the auth connection after 10 s without an answer

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(_Model):
    """A failure score: +1 per *distinct* failed guess, leaking ``refuse`` per ``window``.

    Below ``free`` nothing happens; from ``free`` on the answer is delayed by ``base_delay``
    doubling with each further failure (capped by ``max_delay``); at ``refuse`` the attempt is
    refused without being checked.  So in the long run ``refuse`` guesses per ``window`` pass.
    """

    free: int = Field(ge=0)
    refuse: int = Field(ge=1)
    window: Window

    @model_validator(mode="after")
    def _order(self) -> Rule:
        if self.free > self.refuse:
            raise ValueError("free must not exceed refuse")
        return self


class Distinct(_Model):
    """Refuse once ``refuse`` distinct user names failed within ``window``."""

    refuse: int = Field(ge=1)
    window: Window


class LimitsSettings(_Model):
    enabled: bool = True
    backend: Literal["memory", "redis"] = "memory"
    url: str | None = None  # redis://host:port/db, with backend: redis
    key_prefix: str = "saslauth:"
    redis_timeout: Duration = 0.25
    redis_retry: Duration = 5.0
    max_delay: Duration = 8.0  # the longest an answer may take, failure_delay included
    base_delay: Duration = 0.25
    ipv4_prefix: int = Field(default=32, ge=8, le=32)
    ipv6_prefix: int = Field(default=64, ge=16, le=128)
    trusted_networks: tuple[Network, ...] = ()
    # network.free >= pair.refuse: one user's wrong passwords alone never slow a shared address
    network: Rule = Rule(free=10, refuse=50, window=600.0)
    user: Rule = Rule(free=3, refuse=10, window=3600.0)
    pair: Rule = Rule(free=3, refuse=10, window=600.0)
    spray_users: Distinct = Distinct(refuse=20, window=600.0)
    spray_password: Distinct = Distinct(refuse=10, window=3600.0)
    remember_success: Window = 7 * 86400.0
    repeat_memory: int = Field(default=8, ge=1, le=64)
    max_entries: int = Field(default=100_000, ge=100)

    @model_validator(mode="after")
    def _check(self) -> LimitsSettings:
        if self.max_delay >= POSTFIX_TIMEOUT:
            raise ValueError(
                "max_delay must be under 10s: Postfix gives up on the auth server after 10 s"
            )
        if self.backend == "redis" and not self.url:
            raise ValueError("backend redis needs url: redis://HOST:PORT/DB")
        if self.url and not re.match(r"^(redis|rediss|unix)://", self.url):
            raise ValueError("url must start with redis://, rediss:// or unix://")
        return self

    def check_failure_delay(self, failure_delay: float) -> None:
        """The whole answer (penalty + failure delay) must fit in ``max_delay``."""
        if self.enabled and failure_delay > self.max_delay:
            raise ValueError(
                f"limits.max_delay ({self.max_delay:g}s) is the longest an answer may take, "
                f"failure_delay ({failure_delay:g}s) included: it must not be shorter"
            )
