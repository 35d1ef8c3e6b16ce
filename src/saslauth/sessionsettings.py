"""What every session of a front shares: the configured mechanisms, the username policy, the
failure delay and temporary-failure mode, and the limiter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from saslauth import mechanisms as mech
from saslauth.events import AuthRequest
from saslauth.usernames import UsernamePolicy

if TYPE_CHECKING:
    from saslauth.limits.limiter import Limiter


@dataclass(frozen=True, slots=True)
class SessionSettings:
    # Each configured mechanism's exchange() on one shared instance: mechanisms keep their
    # per-request state in the generator, so one object per name serves every request.
    exchanges: dict[str, Callable[[AuthRequest], mech.Exchange]]
    # The mechanisms that can decide from an initial response alone (mech.Immediate), by name.
    immediates: dict[str, Callable[[bytes], mech.VerifyPlain | mech.Failure]]
    usernames: UsernamePolicy
    failure_delay: float = 2.0
    tempfail: Literal["fail", "disconnect"] = "fail"
    spid: int = 0
    mech_lines: list[tuple[str, list[str]]] = field(default_factory=list)
    limiter: Limiter | None = None  # saslauth.limits: penalties and refusals around verify
    # an auth: line for every attempt, or (False, as auth_log's default) failures only
    log_successes: bool = False

    @classmethod
    def create(
        cls,
        names: list[str] | tuple[str, ...],
        usernames: UsernamePolicy,
        **kwargs: object,
    ) -> SessionSettings:
        known = mech.registry()
        chosen = {name: known[name] for name in names}
        lines = [(name, cls_.security.words()) for name, cls_ in chosen.items()]
        exchanges: dict[str, Callable[[AuthRequest], mech.Exchange]] = {}
        immediates: dict[str, Callable[[bytes], mech.VerifyPlain | mech.Failure]] = {}
        for name, cls_ in chosen.items():
            mechanism = cls_(usernames)
            exchanges[name] = mechanism.exchange
            if isinstance(mechanism, mech.Immediate):
                immediates[name] = mechanism.immediate
        return cls(exchanges, immediates, usernames, mech_lines=lines, **kwargs)  # type: ignore[arg-type]
