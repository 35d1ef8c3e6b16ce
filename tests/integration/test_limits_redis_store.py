"""The Redis store against a throwaway redis-server: the same answers as the memory store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("redis", reason="redis-py not installed (pip install 'saslauth[redis]')")

from saslauth.limits.keys import Keys, client_network
from saslauth.limits.policy import Snapshot, failures
from saslauth.limits.redis_store import FallbackStore, RedisStore
from saslauth.limits.settings import LimitsSettings
from saslauth.limits.store import MemoryStore, Store
from tests.fixtures.ports import public_tmpdir
from tests.fixtures.redis import RedisServer, redis_skip_reason, start_redis

pytestmark = pytest.mark.skipif(redis_skip_reason() is not None, reason=str(redis_skip_reason()))


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with public_tmpdir() as directory:
        server = start_redis(Path(directory))
        try:
            yield server
        finally:
            server.kill()


async def scenario(store: Store) -> list[Snapshot]:
    t = 1_000_000.0
    a = Keys.of(client_network("198.51.100.9", 32, 64), "alice")
    b = Keys.of(client_network("198.51.100.9", 32, 64), "bob")
    out = []
    for i in range(6):
        await store.failure(a, t + i, network=True, user=True, pair=i % 2 == 0)
    out.append(await store.snapshot(a, t + 6))
    await store.failure(b, t + 7, network=True, user=True, pair=True)
    out.append(await store.snapshot(b, t + 8))
    out.append(await store.snapshot(a, t + 120))  # leaked for two minutes
    await store.success(a, t + 121)
    out.append(await store.snapshot(a, t + 122))
    await store.close()
    return out


def rounded(snapshots: list[Snapshot]) -> list[tuple[float, ...]]:
    return [
        (round(s.network, 6), round(s.user, 6), round(s.pair, 6), s.recent_success, s.spray_users)
        for s in snapshots
    ]


def test_redis_store_answers_like_the_memory_store(redis_server: RedisServer) -> None:
    settings = LimitsSettings(backend="redis", url=redis_server.url, key_prefix="t1:")
    memory = asyncio.run(scenario(MemoryStore(settings)))
    shared = asyncio.run(scenario(RedisStore(settings)))
    assert rounded(shared) == rounded(memory)
    first = memory[0]
    assert (failures(first.network), failures(first.user), failures(first.pair)) == (6, 6, 3)
    assert first.network == pytest.approx(6 - 6 * 50 / 600)  # leaking since the first failure
    assert memory[-1].recent_success and memory[-1].network == 0 and memory[-1].pair == 0


def test_fallback_store_uses_redis_while_it_answers(redis_server: RedisServer) -> None:
    settings = LimitsSettings(backend="redis", url=redis_server.url, key_prefix="t2:")
    keys = Keys.of(client_network("203.0.113.5", 32, 64), "carol")

    async def go() -> tuple[Snapshot, Snapshot, bool]:
        first = FallbackStore(settings)
        await first.failure(keys, 1_000_000.0, network=True, user=True, pair=True)
        await first.close()
        second = FallbackStore(settings)  # another host: no local memory of carol
        seen = await second.snapshot(keys, 1_000_000.0)
        local = await second.memory.snapshot(keys, 1_000_000.0)
        down = second.down
        await second.close()
        return seen, local, down

    seen, local, down = asyncio.run(go())
    assert (seen.network, seen.user, seen.pair, seen.spray_users) == (1, 1, 1, 1)
    assert local == Snapshot() and not down
