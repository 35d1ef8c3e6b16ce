"""Shared fixtures: registered here, implemented in tests/fixtures/."""

from tests.fixtures.dovecot import dovecot_auth, passwd_file
from tests.fixtures.postfix import postfix_dovecot

__all__ = ["dovecot_auth", "passwd_file", "postfix_dovecot"]
