"""``driver: ldap``: bind as the user, or verify the stored password (keys: ldap_settings)."""

from __future__ import annotations

from typing import Literal

from saslauth.passdb.ldap_settings import LdapKeys
from saslauth.settings.base import DriverSettings, Duration


class LdapSettings(LdapKeys, DriverSettings):
    driver: Literal["ldap"]
    connect_timeout: Duration = 2.0
    timeout: Duration = 3.0  # per operation; leaves room for one fail-over within 7 s
