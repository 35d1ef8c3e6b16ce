"""LOGIN (draft-murchison-sasl-login): ``Username:`` and ``Password:`` challenges.

As in Dovecot: a non-empty initial response is the username; the username is validated when
it arrives (a bad one fails without a ``Password:`` round); NUL bytes are not allowed in either
value; one in the name fails without ``user=``, one in the password with it (observed).
"""

from __future__ import annotations

from typing import ClassVar, final

from saslauth import wire
from saslauth.events import AuthRequest
from saslauth.mechanisms import (
    Exchange,
    Failure,
    PassdbNeed,
    SecurityFlags,
    challenge,
    verify_password,
)
from saslauth.usernames import UsernamePolicy


@final
class Login:
    name: ClassVar[str] = "LOGIN"
    security: ClassVar[SecurityFlags] = SecurityFlags.PLAINTEXT
    needs: ClassVar[PassdbNeed] = PassdbNeed.VERIFY_PLAIN

    def __init__(self, usernames: UsernamePolicy) -> None:
        self._usernames = usernames

    def exchange(self, request: AuthRequest) -> Exchange:
        username = request.initial
        if not username:
            username = yield from challenge(b"Username:")
        if b"\x00" in username:
            return Failure(None)
        identity = self._usernames.identify(wire.decode_text(username))
        if not identity.valid:
            return Failure(identity)
        password = yield from challenge(b"Password:")
        if b"\x00" in password:
            return Failure(identity)  # Dovecot 2.3.19: the name is known by now (user=alice)
        return (yield from verify_password(self._usernames, identity, password))
