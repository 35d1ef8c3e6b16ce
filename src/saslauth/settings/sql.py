"""``driver: sql``: SQLite, PostgreSQL, MariaDB/MySQL (keys: saslauth.passdb.sql.settings)."""

from __future__ import annotations

from typing import Literal

from saslauth.passdb.sql.settings import SqlFields
from saslauth.settings.base import DriverSettings, Duration


class SqlSettings(SqlFields, DriverSettings):
    driver: Literal["sql"]
    connect_timeout: Duration = 2.0
    query_timeout: Duration = 2.0
