-- saslauth: a ready users table for the sql passdb (SQLite, PostgreSQL and MariaDB/MySQL).
--
--   sqlite3 users.db < examples/sql/schema.sql
--   sqlite3 users.db "INSERT INTO users (username, password) VALUES \
--       ('demo@example.org', '$(saslauth hash -s SHA512-CRYPT -p demo)')"
--
-- username   the login name (saslauth lower-cases logins by default, so store lower case)
-- password   {SCHEME}hash as printed by `saslauth hash` or `doveadm pw`; without a {SCHEME}
--            prefix the passdb's default_scheme applies
-- active     0 disables the account (the example query only returns active rows)
-- allow_nets NULL, or networks the user may log in from (e.g. '192.0.2.0/24,local')
-- nologin    NULL, or any value to refuse the login after a right password (Dovecot's nologin)
CREATE TABLE users (
    username   VARCHAR(255) NOT NULL PRIMARY KEY,
    password   VARCHAR(255) NOT NULL,
    active     SMALLINT     NOT NULL DEFAULT 1,
    allow_nets VARCHAR(255) NULL,
    nologin    VARCHAR(16)  NULL
);
