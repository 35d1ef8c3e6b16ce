"""``driver: imap``: a password is right when an IMAP server accepts it."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from saslauth.settings.base import DriverSettings, Duration, absolute


def _is_loopback(host: str) -> bool:
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ImapSettings(DriverSettings):
    """``driver: imap``: a password is right when an IMAP server accepts it (Cyrus' rimap)."""

    driver: Literal["imap"]
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)  # 993 (implicit) or 143
    allow_plaintext: bool = False
    tls: Literal["implicit", "starttls", "none"] = "implicit"
    ca_file: str | None = None  # default: the system's trusted CAs
    server_name: str | None = None  # SNI and certificate name (default: host)
    tls_verify: bool = True
    connect_timeout: Duration = 3.0
    timeout: Duration = 5.0  # the whole conversation; the verifier's own limit is 7 s
    max_connections: int = Field(default=32, ge=1, le=1024)

    @field_validator("tls")
    @classmethod
    def _plaintext(cls, value: str, info: ValidationInfo) -> str:
        host = info.data.get("host")
        plaintext_ok = info.data.get("allow_plaintext") or not host or _is_loopback(host)
        if value == "none" and not plaintext_ok:
            raise ValueError(
                f"none would send passwords in clear to {host}; use implicit or starttls, "
                "or set allow_plaintext: true"
            )
        return value

    def resolve(self, base: Path) -> ImapSettings:
        if self.ca_file is None:
            return self
        return self.model_copy(update={"ca_file": absolute(self.ca_file, base)})

    def warnings(self) -> list[str]:
        notes = []
        if self.ca_file is not None and not os.access(self.ca_file, os.R_OK):
            notes.append(f"passdb {self.label}: ca_file {self.ca_file} is not readable")
        if self.tls == "none" and not _is_loopback(self.host):
            notes.append(f"passdb {self.label}: passwords cross the network in clear")
        if self.tls != "none" and not self.tls_verify:
            notes.append(f"passdb {self.label}: tls_verify is off (anyone can impersonate it)")
        if self.timeout >= 7:
            notes.append(f"passdb {self.label}: timeout >= 7s: the verifier gives up first")
        return notes

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 993 if self.tls == "implicit" else 143

    @property
    def label(self) -> str:
        return self.name or f"imap:{self.host}:{self.effective_port}"
