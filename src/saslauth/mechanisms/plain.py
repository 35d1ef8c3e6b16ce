"""PLAIN (RFC 4616): ``authzid NUL authcid NUL password`` in one message."""

from __future__ import annotations

from typing import ClassVar, cast, final

from saslauth.events import AuthRequest
from saslauth.mechanisms import (
    Exchange,
    Failure,
    PassdbNeed,
    SecurityFlags,
    VerifyPlain,
    challenge,
    verified,
)
from saslauth.usernames import UsernamePolicy


@final
class Plain:
    name: ClassVar[str] = "PLAIN"
    security: ClassVar[SecurityFlags] = SecurityFlags.PLAINTEXT
    needs: ClassVar[PassdbNeed] = PassdbNeed.VERIFY_PLAIN

    def __init__(self, usernames: UsernamePolicy) -> None:
        self._usernames = usernames

    def exchange(self, request: AuthRequest) -> Exchange:
        data = request.initial
        if data is None:  # no initial response: an empty challenge asks for it
            data = yield from challenge(b"")
        check = self.immediate(data)
        if type(check) is Failure:
            return check
        return (yield from verified(cast(VerifyPlain, check)))

    def immediate(self, data: bytes) -> VerifyPlain | Failure:
        """The password check for the client's message ``data``, or why there is none."""
        parts = data.split(b"\x00")
        if len(parts) != 3:  # exactly two NULs, or it is "invalid input" (no user= in FAIL)
            return Failure(None)
        authzid, authcid, password = parts
        identity = self._usernames.identify(authcid.decode("utf-8", "surrogateescape"))
        if not identity.valid:
            return Failure(identity)
        if authzid and authzid != authcid:
            # A different authzid is a master-user login; there are no master passdbs (yet).
            return Failure(identity)
        # password_check(self._usernames, identity, password), inline: the commonest login
        prepared = self._usernames.prepare_password(password)
        if prepared is None:
            return Failure(identity)
        return VerifyPlain(identity, prepared)
