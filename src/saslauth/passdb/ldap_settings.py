"""The keys of the ``ldap`` passdb driver (pydantic only: :mod:`saslauth.config` imports this).

:mod:`saslauth.config` combines :class:`LdapKeys` with its ``DriverSettings`` into
``LdapSettings`` (adding the tag and the durations), so this module needs nothing from it and
the import order never matters; use ``saslauth.config.LdapSettings``.  The driver itself
(:mod:`saslauth.passdb.ldap`) needs the ``ldap3`` library, installed with the ``saslauth[ldap]``
extra; a config that names the driver without it fails ``check-config``.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from saslauth.passdb.ldap_template import TemplateError, check_template

DEFAULT_FILTER = "(&(objectClass=posixAccount)(uid=%u))"


def _uri_host(uri: str) -> str:
    return urlsplit(uri).hostname or ""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LdapKeys(BaseModel):
    """``driver: ldap`` -- see the README's LDAP section for every key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    uris: tuple[str, ...] = Field(min_length=1)
    # none | starttls | ldaps; unset: ldaps for ldaps:// URIs, starttls otherwise.
    tls: Literal["none", "starttls", "ldaps"] | None = None
    tls_verify: bool = True
    ca_file: str | None = None
    pool_size: int = Field(default=4, ge=1, le=64)
    auth: Literal["bind", "password"] = "bind"
    base: str = ""
    scope: Literal["base", "one", "subtree"] = "subtree"
    filter: str = DEFAULT_FILTER
    user_dn: str | None = None
    bind_dn: str | None = None
    bind_password_file: str | None = None
    password_attribute: str = "userPassword"  # noqa: S105 - an attribute name
    default_scheme: str = "CRYPT"

    @field_validator("driver", check_fields=False)
    @classmethod
    def _library(cls, value: str) -> str:
        if importlib.util.find_spec("ldap3") is None:
            raise ValueError(
                "the ldap driver needs the ldap3 library: pip install 'saslauth[ldap]'"
            )
        return value

    @field_validator("uris")
    @classmethod
    def _uris(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for uri in value:
            parts = urlsplit(uri)
            if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
                raise ValueError(f"{uri!r}: expected ldap://HOST[:PORT] or ldaps://HOST[:PORT]")
            if parts.path not in ("", "/") or parts.query:
                raise ValueError(f"{uri!r}: put the search base in 'base', not in the URI")
            try:
                _ = parts.port
            except ValueError:
                raise ValueError(f"{uri!r}: invalid port") from None
        return value

    @field_validator("filter")
    @classmethod
    def _filter(cls, value: str) -> str:
        _check(value)
        depth = 0
        for ch in value.replace("\\(", "").replace("\\)", ""):
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth < 0:
                break
        if not (value.startswith("(") and value.endswith(")")) or depth != 0:
            raise ValueError("an LDAP filter in balanced parentheses, like " + DEFAULT_FILTER)
        return value

    @field_validator("user_dn")
    @classmethod
    def _user_dn(cls, value: str | None) -> str | None:
        if value is not None:
            _check(value)
            if "%" not in value.replace("%%", ""):
                raise ValueError("a DN template with the user in it, like uid=%n,ou=people,...")
        return value

    @field_validator("password_attribute")
    @classmethod
    def _attribute(cls, value: str) -> str:
        if not value or not all(ch.isalnum() or ch in "-;." for ch in value):
            raise ValueError("an attribute name, like userPassword")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        schemes = {urlsplit(uri).scheme for uri in self.uris}
        if self.tls == "ldaps" and schemes != {"ldaps"}:
            raise ValueError("tls: ldaps needs ldaps:// URIs")
        if self.tls in ("none", "starttls") and schemes != {"ldap"}:
            raise ValueError(f"tls: {self.tls} needs ldap:// URIs")
        if self.tls is None and len(schemes) > 1:
            raise ValueError("uris mix ldap:// and ldaps://; use one kind")
        if self.user_dn is None and not self.base:
            raise ValueError("set 'base' (where to search for users) or a 'user_dn' template")
        if (self.bind_dn is None) != (self.bind_password_file is None):
            raise ValueError("bind_dn and bind_password_file go together")
        return self

    @property
    def tls_mode(self) -> Literal["none", "starttls", "ldaps"]:
        if self.tls is not None:
            return self.tls
        return "ldaps" if urlsplit(self.uris[0]).scheme == "ldaps" else "starttls"

    def resolve(self, base: Path) -> Self:
        update = {}
        for key in ("ca_file", "bind_password_file"):
            path = getattr(self, key)
            if path is not None and not os.path.isabs(path):
                update[key] = str((base / path).resolve())
        return self.model_copy(update=update)

    def warnings(self) -> list[str]:
        notes = []
        remote = [uri for uri in self.uris if not _is_loopback(_uri_host(uri))]
        if self.tls_mode == "none" and remote:
            notes.append(
                f"passdb {self.label}: tls: none sends passwords in clear text to {remote[0]}"
            )
        if not self.tls_verify:
            notes.append(f"passdb {self.label}: tls_verify: false accepts any server certificate")
        for path in (self.ca_file, self.bind_password_file):
            if path is not None and not os.access(path, os.R_OK):
                notes.append(f"passdb {self.label}: {path}: not readable by this user")
        if self.auth == "password" and self.bind_dn is None:
            notes.append(
                f"passdb {self.label}: auth: password reads {self.password_attribute} "
                "anonymously; most directories only show it to a service account (bind_dn)"
            )
        return notes

    @property
    def label(self) -> str:
        return self.name or f"ldap:{self.uris[0]}"


def _check(template: str) -> None:
    try:
        check_template(template)
    except TemplateError as exc:
        raise ValueError(str(exc)) from None
