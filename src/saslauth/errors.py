"""The whole exception tree of saslauth.

Expected failures (wrong password, unknown user, ...) are *values* (``passdb.Verdict``), never
exceptions.  Exceptions are for bugs, broken peers and outages, and each knows how it reaches
the wire.
"""

from __future__ import annotations


class SaslauthError(Exception):
    """Base of every exception saslauth raises on purpose."""


class ConfigError(SaslauthError):
    """The configuration is invalid.

    ``problems`` holds every problem as ``(file, line, key, message)``; ``str()`` renders them as
    ``FILE:LINE: key: message`` lines, the format ``check-config`` and ``serve`` print.
    """

    def __init__(self, problems: list[tuple[str, int, str, str]]) -> None:
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(f"{file}:{line}: {key}: {msg}" for file, line, key, msg in self.problems)


class ProtocolError(SaslauthError):
    """A Dovecot auth-protocol violation (abstract)."""


class LocalProtocolError(ProtocolError):
    """We tried to send something the protocol does not allow: a bug in saslauth."""


class RemoteProtocolError(ProtocolError):
    """The client broke the protocol; as in Dovecot, the connection is closed without a reply."""


class BackendError(SaslauthError):
    """A passdb could not answer (down, timed out, unreadable).  Becomes a temporary failure."""


class BackendTimeout(BackendError):
    """A passdb did not answer in time."""


class VerifierError(SaslauthError):
    """The verifier child died or spoke garbage.  Requests in flight fail temporarily."""


class SchemeError(SaslauthError):
    """A stored password cannot be verified (abstract).  Never carries the hash itself."""


class UnknownSchemeError(SchemeError):
    """The ``{SCHEME}`` prefix names a scheme saslauth does not know."""


class InvalidHashError(SchemeError):
    """The stored value is not a well-formed hash of its scheme."""
