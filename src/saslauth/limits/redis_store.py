"""Counts shared by several saslauth hosts through Redis, with local memory as the fallback.

Only scores, "recently logged in" flags and digests of user names go to Redis; password
fingerprints stay in each process.  Each call is bounded by ``redis_timeout``; on any error the
store logs once, counts in local memory and tries Redis again after ``redis_retry``.  A login
never fails because Redis is down.  Failures are always mirrored into local memory, so an
outage starts from recent local counts rather than from nothing.  Hosts need synchronised
clocks (NTP): the scores leak by wall-clock time.

Imported (with redis-py) only for ``backend: redis``, when the front builds its session
settings: that happens before it drops its privileges, so later imports cannot be refused.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from saslauth.limits.keys import Keys, user_digest
from saslauth.limits.policy import Snapshot, decayed, leak_rate
from saslauth.limits.settings import LimitsSettings, Rule
from saslauth.limits.store import MemoryStore

log = logging.getLogger("saslauth.limits")

# KEYS: score hashes; ARGV: now, then one leak rate per key.  Decay, add one, store, expire.
_ADD = """
local now = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local rate = tonumber(ARGV[i + 1])
  local old = redis.call('HMGET', key, 'v', 't')
  local value = tonumber(old[1]) or 0
  local at = tonumber(old[2]) or now
  local elapsed = now - at
  if elapsed < 0 then elapsed = 0 end
  value = value - elapsed * rate
  if value < 0 then value = 0 end
  value = value + 1
  redis.call('HSET', key, 'v', tostring(value), 't', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(value / rate * 1000) + 1000)
end
return 1
"""


def redacted(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class RedisStore:
    def __init__(self, settings: LimitsSettings) -> None:
        assert settings.url is not None
        self.settings = settings
        self._redis: Redis | None = None

    def _client(self) -> Redis:
        if self._redis is None:
            timeout = self.settings.redis_timeout
            self._redis = Redis.from_url(
                self.settings.url or "",
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
            )
        return self._redis

    def _k(self, key: str) -> str:
        return self.settings.key_prefix + key

    async def snapshot(self, keys: Keys, now: float) -> Snapshot:
        s = self.settings
        async with self._client().pipeline(transaction=False) as pipe:
            pipe.hmget(self._k(keys.network), ["v", "t"])
            pipe.hmget(self._k(keys.user), ["v", "t"])
            pipe.hmget(self._k(keys.pair), ["v", "t"])
            pipe.exists(self._k(keys.success))
            pipe.zcount(self._k(keys.users), f"({now - s.spray_users.window}", "+inf")
            net, user, pair, ok, users = await pipe.execute()
        return Snapshot(
            network=_score(net, s.network, now),
            user=_score(user, s.user, now),
            pair=_score(pair, s.pair, now),
            recent_success=bool(ok),
            spray_users=int(users),
        )

    async def failure(
        self, keys: Keys, now: float, *, network: bool, user: bool, pair: bool
    ) -> None:
        s = self.settings
        chosen = [
            (keys.network, s.network, network),
            (keys.user, s.user, user),
            (keys.pair, s.pair, pair),
        ]
        score_keys = [self._k(key) for key, _, wanted in chosen if wanted]
        rates = [repr(leak_rate(rule)) for _, rule, wanted in chosen if wanted]
        window = s.spray_users.window
        users = self._k(keys.users)
        async with self._client().pipeline(transaction=False) as pipe:
            if score_keys:
                pipe.eval(_ADD, len(score_keys), *score_keys, repr(now), *rates)
            pipe.zadd(users, {user_digest(keys.user_name): now})
            pipe.zremrangebyscore(users, "-inf", now - window)
            pipe.zremrangebyrank(users, 0, -s.spray_users.refuse - 1)
            pipe.pexpire(users, math.ceil(window * 1000))
            await pipe.execute()

    async def success(self, keys: Keys, now: float) -> None:
        async with self._client().pipeline(transaction=False) as pipe:
            pipe.delete(self._k(keys.network), self._k(keys.pair))
            remember = math.ceil(self.settings.remember_success * 1000)
            pipe.set(self._k(keys.success), b"1", px=remember)
            await pipe.execute()

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


def _score(values: list[Any], rule: Rule, now: float) -> float:
    if not values or values[0] is None or values[1] is None:
        return 0.0
    return decayed(float(values[0]), float(values[1]), now, leak_rate(rule))


class FallbackStore:
    """Redis while it answers, local memory (logged) while it does not."""

    def __init__(self, settings: LimitsSettings, redis: RedisStore | None = None) -> None:
        self.settings = settings
        self.redis = redis or RedisStore(settings)
        self.memory = MemoryStore(settings)
        self.down = False
        self._retry_at = 0.0

    async def _shared(self, call: Any) -> tuple[bool, Any]:
        """Run ``call`` on Redis unless it is known to be down; (done, result)."""
        if self.down and time.monotonic() < self._retry_at:
            return False, None
        try:
            async with asyncio.timeout(self.settings.redis_timeout):
                result = await call()
        except Exception as exc:  # any Redis trouble: never fail a login because of it
            if not self.down:
                log.warning(
                    "limits: Redis %s unreachable (%s); counting in local memory, retrying "
                    "every %gs",
                    redacted(self.settings.url or ""),
                    type(exc).__name__ if not str(exc) else exc,
                    self.settings.redis_retry,
                )
            self.down = True
            self._retry_at = time.monotonic() + self.settings.redis_retry
            await self._drop_connections()
            return False, None
        if self.down:
            log.warning("limits: Redis %s reachable again", redacted(self.settings.url or ""))
            self.down = False
        return True, result

    async def _drop_connections(self) -> None:
        try:
            await self.redis.close()
        except Exception as exc:  # closing a broken connection may fail too
            log.debug("limits: closing the Redis client: %s", exc)

    async def snapshot(self, keys: Keys, now: float) -> Snapshot:
        done, result = await self._shared(lambda: self.redis.snapshot(keys, now))
        if done:
            assert isinstance(result, Snapshot)
            return result
        return await self.memory.snapshot(keys, now)

    async def failure(
        self, keys: Keys, now: float, *, network: bool, user: bool, pair: bool
    ) -> None:
        await self.memory.failure(keys, now, network=network, user=user, pair=pair)
        await self._shared(
            lambda: self.redis.failure(keys, now, network=network, user=user, pair=pair)
        )

    async def success(self, keys: Keys, now: float) -> None:
        await self.memory.success(keys, now)
        await self._shared(lambda: self.redis.success(keys, now))

    async def close(self) -> None:
        await self.redis.close()
