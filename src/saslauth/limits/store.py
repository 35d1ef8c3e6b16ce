"""The limiter's state: the store interface and the in-memory store.

Every structure is bounded (``max_entries`` keys per table, least recently used dropped first;
a distinct-user set keeps at most ``refuse`` members, enough to decide) and entries expire, so
an attacker with many addresses or user names cannot grow the daemon without bound.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Protocol, TypeVar

from saslauth.limits.keys import Keys
from saslauth.limits.policy import Snapshot, decayed, leak_rate
from saslauth.limits.settings import LimitsSettings, Rule

V = TypeVar("V")


class Store(Protocol):
    """Shared counts; ``spray_password`` is never in a store (it needs password fingerprints)."""

    async def snapshot(self, keys: Keys, now: float) -> Snapshot: ...

    async def failure(
        self, keys: Keys, now: float, *, network: bool, user: bool, pair: bool
    ) -> None: ...

    async def success(self, keys: Keys, now: float) -> None: ...

    async def close(self) -> None: ...


class Bounded(Generic[V]):
    """A map with per-entry expiry and a size bound (LRU eviction)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str, now: float) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= now:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: str, value: V, expires: float) -> None:
        self._items[key] = (expires, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def pop(self, key: str) -> None:
        self._items.pop(key, None)


def distinct_add(
    members: dict[str, float], member: str, now: float, window: float, cap: int
) -> None:
    """Record ``member`` at ``now`` in a time-stamped set, dropping old and surplus members."""
    members[member] = now
    for name, at in list(members.items()):
        if at <= now - window:
            del members[name]
    while len(members) > cap:
        oldest = min(members, key=members.__getitem__)
        del members[oldest]


def distinct_count(members: dict[str, float] | None, now: float, window: float) -> int:
    if not members:
        return 0
    return sum(1 for at in members.values() if at > now - window)


class MemoryStore:
    """Per-process state (the default, and the fallback when Redis is unreachable)."""

    def __init__(self, settings: LimitsSettings) -> None:
        self.settings = settings
        self.scores: Bounded[tuple[float, float]] = Bounded(settings.max_entries)
        self.flags: Bounded[bool] = Bounded(settings.max_entries)
        self.sets: Bounded[dict[str, float]] = Bounded(settings.max_entries)

    def _score(self, key: str, rule: Rule, now: float) -> float:
        item = self.scores.get(key, now)
        return 0.0 if item is None else decayed(item[0], item[1], now, leak_rate(rule))

    def _add(self, key: str, rule: Rule, now: float) -> None:
        value = self._score(key, rule, now) + 1.0
        self.scores.put(key, (value, now), now + value / leak_rate(rule))

    async def snapshot(self, keys: Keys, now: float) -> Snapshot:
        s = self.settings
        return Snapshot(
            network=self._score(keys.network, s.network, now),
            user=self._score(keys.user, s.user, now),
            pair=self._score(keys.pair, s.pair, now),
            recent_success=self.flags.get(keys.success, now) is not None,
            spray_users=distinct_count(
                self.sets.get(keys.users, now), now, s.spray_users.window
            ),
        )

    async def failure(
        self, keys: Keys, now: float, *, network: bool, user: bool, pair: bool
    ) -> None:
        s = self.settings
        if network:
            self._add(keys.network, s.network, now)
        if user:
            self._add(keys.user, s.user, now)
        if pair:
            self._add(keys.pair, s.pair, now)
        window = s.spray_users.window
        members = self.sets.get(keys.users, now) or {}
        distinct_add(members, keys.user_name, now, window, s.spray_users.refuse)
        self.sets.put(keys.users, members, now + window)

    async def success(self, keys: Keys, now: float) -> None:
        self.scores.pop(keys.network)
        self.scores.pop(keys.pair)
        self.flags.put(keys.success, True, now + self.settings.remember_success)

    async def close(self) -> None:
        return None
