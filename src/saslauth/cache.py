"""The verification cache: remembers recent verdicts so a repeated login skips the hash.

Safe by construction:

* Entries are keyed by HMAC-SHA256 under a random key made when the cache is created
  (:func:`secrets.token_bytes`); the key never leaves this object, so a memory dump or a log
  line holding a cache key cannot be used to test password guesses offline, and no entry holds
  the password or a plain hash of it.
* Memory only (the verifier child, the privileged side), bounded (LRU, ``size`` entries),
  with separate TTLs for right (``ttl``) and wrong (``negative_ttl``) passwords.
* For a backend that hands back a stored hash (passwd-file, SQL, LDAP-password), the stored
  hash is part of the key: :meth:`VerifyCache.verify` wraps the expensive
  ``schemes.verify`` call, so a changed password takes effect at once.  Backends without one
  (PAM, IMAP, LDAP bind) are cached by the chain (:meth:`VerifyCache.lookup_key`): there only
  the TTL bounds how long a changed password keeps working, and ``saslauth flush [USER]`` /
  ``SIGUSR1`` empty the cache.

Whether the current request was answered from the cache is kept in a context variable
(:data:`outcome`), which the verifier reads after each request for the per-attempt log line.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from saslauth.passdb import Lookup, Verdict

T = TypeVar("T")

# "hit" / "miss" for the request being served, "" when the cache was not consulted.
outcome: contextvars.ContextVar[str] = contextvars.ContextVar("saslauth_cache", default="")


@dataclass(slots=True)
class _Entry(Generic[T]):
    value: T
    expires: float
    user_tag: bytes


class VerifyCache:
    """An LRU map HMAC-key -> verdict with positive and negative TTLs.

    Args:
        ttl: seconds a right password stays cached (0: never cached).
        negative_ttl: seconds a wrong password stays cached (0: never cached).
        size: at most this many entries; the least recently used one goes first.
        clock: a monotonic clock (tests inject one).
    """

    def __init__(
        self,
        ttl: float,
        negative_ttl: float,
        size: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if size < 1:
            raise ValueError("the cache size must be at least 1")
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.size = size
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._hmac = hmac.new(self._key, digestmod=hashlib.sha256)  # never updated: copied
        self._entries: OrderedDict[bytes, _Entry[object]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:  # never the key or the entries
        return f"<VerifyCache {len(self)}/{self.size} entries, ttl {self.ttl}/{self.negative_ttl}>"

    def __len__(self) -> int:
        return len(self._entries)

    # ---- keys -----------------------------------------------------------------------------
    def _mac(self, *parts: bytes) -> bytes:
        # Length-prefixed: no two part lists give the same message.  One update of a copy of
        # the keyed HMAC (its pads already hashed) costs half of a new HMAC fed part by part.
        mac = self._hmac.copy()
        mac.update(b"".join([len(part).to_bytes(4, "big") + part for part in parts]))
        return mac.digest()

    def _user_tag(self, user: str) -> bytes:
        return self._mac(b"user", user.encode("utf-8", "surrogateescape"))

    def hash_key(self, user: str, password: bytes, stored: str) -> bytes:
        """The key of one (user, password) against one stored hash."""
        enc = "utf-8"
        return self._mac(b"hash", user.encode(enc, "surrogateescape"), password,
                         stored.encode(enc, "surrogateescape"))  # fmt: skip

    def lookup_key(self, backend: str, user: str, password: bytes) -> bytes:
        """The key of one (user, password) at a backend that returns no stored hash."""
        enc = "utf-8"
        return self._mac(b"backend", backend.encode(enc, "surrogateescape"),
                         user.encode(enc, "surrogateescape"), password)  # fmt: skip

    # ---- entries --------------------------------------------------------------------------
    def get(self, key: bytes) -> object | None:
        """The cached value under ``key``, or None (missing or expired)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry.value

    def put(self, key: bytes, value: object, *, positive: bool, user: str) -> None:
        ttl = self.ttl if positive else self.negative_ttl
        if ttl <= 0:
            return
        self._entries[key] = _Entry(value, self._clock() + ttl, self._user_tag(user))
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def flush(self, user: str | None = None) -> int:
        """Drop every entry (``user`` None) or those of one user; return how many went."""
        if user is None:
            count = len(self._entries)
            self._entries.clear()
            return count
        tag = self._user_tag(user)
        doomed = [k for k, e in self._entries.items() if hmac.compare_digest(e.user_tag, tag)]
        for key in doomed:
            del self._entries[key]
        return len(doomed)

    def recall(self, key: bytes, kind: type[T]) -> T | None:
        """The entry under ``key`` if it is a ``kind``, else None; counts and records hit/miss."""
        value = self.get(key)
        if isinstance(value, kind):
            self.hits += 1
            outcome.set("hit")
            return value
        self.misses += 1
        outcome.set("miss")
        return None

    # ---- the driver API -------------------------------------------------------------------
    def check(self, user: str, password: bytes, stored: str) -> bool | None:
        """The cached result of ``password`` against ``stored``, or None; records hit/miss."""
        return self.recall(self.hash_key(user, password, stored), bool)

    def remember(self, user: str, password: bytes, stored: str, matched: bool) -> None:
        self.put(self.hash_key(user, password, stored), matched, positive=matched, user=user)

    async def verify(
        self, user: str, password: bytes, stored: str, check: Callable[[], Awaitable[bool]]
    ) -> bool:
        """``await check()`` (the real verification) unless the answer is cached.

        Exceptions from ``check`` (an unreadable hash, an outage) are never cached.
        """
        cached = self.check(user, password, stored)
        if cached is not None:
            return cached
        matched = await check()
        self.remember(user, password, stored, matched)
        return matched


# Verdicts worth remembering at the chain level; outages and odd states are always asked again.
_CACHEABLE = frozenset({Verdict.OK, Verdict.PASSWORD_MISMATCH, Verdict.USER_UNKNOWN})


async def cached_lookup(
    cache: VerifyCache,
    backend: str,
    user: str,
    password: bytes,
    ask: Callable[[], Awaitable[Lookup]],
) -> Lookup:
    """A backend's answer for (user, password), from the cache or from ``await ask()``.

    For backends that return no stored hash (PAM, IMAP, LDAP bind): the key is
    HMAC(backend, user, password), so only the TTL bounds how long a changed password stays
    valid.  Unknown users are cached like wrong passwords (same TTL), so both keep costing the
    same.  BackendError from ``ask`` propagates and nothing is cached.
    """
    key = cache.lookup_key(backend, user, password)
    cached = cache.recall(key, Lookup)
    if cached is not None:
        return cached
    lookup = await ask()
    if lookup.verdict in _CACHEABLE:
        cache.put(key, lookup, positive=lookup.verdict is Verdict.OK, user=user)
    return lookup


_current: VerifyCache | None = None


def install(cache: VerifyCache | None) -> None:
    """Make ``cache`` the verifier's cache (None: caching off)."""
    global _current
    _current = cache


def current() -> VerifyCache | None:
    """The verifier's cache, or None when caching is off (the default)."""
    return _current
