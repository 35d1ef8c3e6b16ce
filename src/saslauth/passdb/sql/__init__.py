"""The ``sql`` passdb: SQLite (stdlib, on one dedicated thread), PostgreSQL (asyncpg) and
MariaDB/MySQL (aiomysql).  This package's ``__init__`` stays empty so that the config
validator can import :mod:`.settings` and :mod:`.query` without loading any driver library.
"""
