"""The verification cache: keys, TTLs, LRU bound, drivers and the chain, the verifier's use."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import pytest

from saslauth import cache as verifycache
from saslauth import schemes, verifier
from saslauth.cache import VerifyCache
from saslauth.config import PasswdFileSettings, parse
from saslauth.errors import BackendError
from saslauth.passdb import Lookup, Verdict
from saslauth.passdb.chain import Chain
from saslauth.passdb.passwd_file import PasswdFile
from saslauth.verifier import VerifyRequest
from saslauth.verifier.child import ChildProtocol
from tests.fixtures.transport import MemoryTransport

PASSWORD = b"correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def installed(clock: Clock) -> Iterator[VerifyCache]:
    cache = VerifyCache(60, 10, 100, clock=clock)
    verifycache.install(cache)
    yield cache
    verifycache.install(None)


def test_key_is_an_hmac_never_the_password(clock: Clock) -> None:
    cache = VerifyCache(60, 10, 100, clock=clock)
    other = VerifyCache(60, 10, 100, clock=clock)
    stored = "{PLAIN}" + PASSWORD.decode()
    key = cache.hash_key("alice", PASSWORD, stored)
    assert len(key) == 32
    assert PASSWORD not in key and b"alice" not in key
    # a random key per cache: the same input gives unrelated keys in another process
    assert key != other.hash_key("alice", PASSWORD, stored)
    # length-prefixed parts: moving bytes between fields changes the key
    assert cache.hash_key("ab", b"c", "x") != cache.hash_key("a", b"bc", "x")
    assert cache.lookup_key("pam", "alice", PASSWORD) != key
    cache.remember("alice", PASSWORD, stored, True)
    for entry_key, entry in cache._entries.items():
        assert PASSWORD not in entry_key and PASSWORD not in entry.user_tag
        assert entry.value is True
    assert "horse" not in repr(cache) and "alice" not in repr(cache)


def test_positive_and_negative_ttls(clock: Clock) -> None:
    cache = VerifyCache(60, 10, 100, clock=clock)
    cache.remember("alice", b"right", "h", True)
    cache.remember("alice", b"wrong", "h", False)
    clock.now += 9.9
    assert cache.check("alice", b"right", "h") is True
    assert cache.check("alice", b"wrong", "h") is False
    clock.now += 0.2  # past the negative TTL only
    assert cache.check("alice", b"wrong", "h") is None
    assert cache.check("alice", b"right", "h") is True
    clock.now += 50
    assert cache.check("alice", b"right", "h") is None
    assert len(cache) == 0


def test_zero_ttl_caches_nothing(clock: Clock) -> None:
    cache = VerifyCache(60, 0, 100, clock=clock)
    cache.remember("alice", b"wrong", "h", False)
    assert cache.check("alice", b"wrong", "h") is None


def test_lru_bound(clock: Clock) -> None:
    cache = VerifyCache(60, 60, 3, clock=clock)
    for i in range(3):
        cache.remember(f"u{i}", b"pw", "h", True)
    assert cache.check("u0", b"pw", "h") is True  # u0 is now the most recently used
    cache.remember("u3", b"pw", "h", True)
    assert len(cache) == 3
    assert cache.check("u1", b"pw", "h") is None  # the least recently used went
    assert cache.check("u0", b"pw", "h") is True
    assert cache.check("u3", b"pw", "h") is True
    with pytest.raises(ValueError, match="at least 1"):
        VerifyCache(1, 1, 0)


def test_flush_all_or_one_user(clock: Clock) -> None:
    cache = VerifyCache(60, 60, 100, clock=clock)
    cache.remember("alice", b"a", "h", True)
    cache.remember("alice", b"b", "h", False)
    cache.remember("bob", b"a", "h", True)
    assert cache.flush("alice") == 2
    assert cache.check("alice", b"a", "h") is None
    assert cache.check("bob", b"a", "h") is True
    assert cache.flush() == 1
    assert len(cache) == 0


def test_verify_wrapper_calls_check_once_and_never_caches_errors(clock: Clock) -> None:
    cache = VerifyCache(60, 60, 100, clock=clock)
    calls = []

    async def check() -> bool:
        calls.append(1)
        return True

    async def broken() -> bool:
        raise BackendError("down")

    async def scenario() -> None:
        assert await cache.verify("alice", PASSWORD, "h", check) is True
        assert await cache.verify("alice", PASSWORD, "h", check) is True
        with pytest.raises(BackendError):
            await cache.verify("bob", PASSWORD, "h", broken)
        with pytest.raises(BackendError):
            await cache.verify("bob", PASSWORD, "h", broken)

    asyncio.run(scenario())
    assert len(calls) == 1
    assert cache.hits == 1 and cache.misses == 3


# ---- passwd-file --------------------------------------------------------------------------


def _passwd(tmp_path: Path, text: str) -> PasswdFile:
    path = tmp_path / "users"
    path.write_text(text)
    return PasswdFile(
        PasswdFileSettings(driver="passwd-file", path=str(path)), ThreadPoolExecutor(2)
    )


def _verify(db: PasswdFile | Chain, user: str, password: bytes) -> tuple[Lookup, str]:
    async def run() -> tuple[Lookup, str]:
        verifycache.outcome.set("")  # as the verifier does per request
        lookup = await db.verify_plain(VerifyRequest(user, password, "smtp"))
        return lookup, verifycache.outcome.get()

    return asyncio.run(run())


def _sha512(password: bytes) -> str:
    return schemes.generate("SHA512-CRYPT", password, rounds=1000)


def test_passwd_file_repeat_is_a_hit_and_password_change_counts_at_once(
    tmp_path: Path, installed: VerifyCache
) -> None:
    db = _passwd(tmp_path, f"alice:{_sha512(PASSWORD)}\n")
    assert _verify(db, "alice", PASSWORD) == (Lookup(Verdict.OK, backend=db.name), "miss")
    assert _verify(db, "alice", PASSWORD)[1] == "hit"
    assert _verify(db, "alice", b"wrong")[0].verdict is Verdict.PASSWORD_MISMATCH
    assert _verify(db, "alice", b"wrong") == (
        Lookup(Verdict.PASSWORD_MISMATCH, backend=db.name),
        "hit",
    )
    # the admin changes the password: the old one fails at once, though its entry is alive
    (tmp_path / "users").write_text(f"alice:{_sha512(b'new password')}\n# changed\n")
    lookup, state = _verify(db, "alice", PASSWORD)
    assert (lookup.verdict, state) == (Verdict.PASSWORD_MISMATCH, "miss")
    assert _verify(db, "alice", b"new password") == (Lookup(Verdict.OK, backend=db.name), "miss")


def test_unknown_user_goes_through_the_cache_like_a_wrong_password(
    tmp_path: Path, installed: VerifyCache
) -> None:
    db = _passwd(tmp_path, f"alice:{_sha512(PASSWORD)}\n")
    for user in ("alice", "nobody"):  # first miss, then hit, for both: the same timing
        assert _verify(db, user, b"guess")[1] == "miss"
        assert _verify(db, user, b"guess")[1] == "hit"
    assert _verify(db, "nobody", b"guess")[0].verdict is Verdict.USER_UNKNOWN


def test_cheap_schemes_bypass_the_cache(tmp_path: Path, installed: VerifyCache) -> None:
    db = _passwd(tmp_path, "bob:{PLAIN}bobpw\n")
    assert _verify(db, "bob", b"bobpw") == (Lookup(Verdict.OK, backend=db.name), "")
    assert len(installed) == 0


def test_cache_off_by_default(tmp_path: Path) -> None:
    assert verifycache.current() is None
    db = _passwd(tmp_path, f"alice:{_sha512(PASSWORD)}\n")
    assert _verify(db, "alice", PASSWORD)[1] == ""
    base = "listen:\n  - path: /tmp/x\npassdb:\n  - driver: passwd-file\n    path: /tmp/u\n"
    assert parse(base, "c.yaml").cache is None
    cfg = parse(base + "cache:\n  ttl: 1h\n  negative_ttl: 5s\n  size: 50\n", "c.yaml")
    assert cfg.cache is not None
    assert (cfg.cache.ttl, cfg.cache.negative_ttl, cfg.cache.size) == (3600, 5, 50)


# ---- the chain, for backends without a stored hash ----------------------------------------


class FakeBind:
    """A backend that answers without a stored hash (like PAM or LDAP bind)."""

    driver: ClassVar[str] = "fake"

    def __init__(self) -> None:
        self.name = "fake"
        self.calls = 0
        self.password = b"pw1"
        self.down = False

    async def verify_plain(self, request: VerifyRequest) -> Lookup:
        self.calls += 1
        if self.down:
            raise BackendError("connection refused")
        if request.user != "alice":
            return Lookup(Verdict.USER_UNKNOWN, backend=self.name)
        if request.password != self.password:
            return Lookup(Verdict.PASSWORD_MISMATCH, backend=self.name)
        return Lookup(Verdict.OK, backend=self.name, extra=(("quota", "1G"),))


def test_chain_caches_backends_without_hash(clock: Clock, installed: VerifyCache) -> None:
    backend = FakeBind()
    chain = Chain([backend])
    ok, state = _verify(chain, "alice", b"pw1")
    assert (ok.verdict, ok.extra, state) == (Verdict.OK, (("quota", "1G"),), "miss")
    assert _verify(chain, "alice", b"pw1") == (ok, "hit")
    assert backend.calls == 1
    # a changed password at such a backend: the TTL bounds how long the old one works
    backend.password = b"pw2"
    assert _verify(chain, "alice", b"pw1")[0].verdict is Verdict.OK
    clock.now += 61
    assert _verify(chain, "alice", b"pw1")[0].verdict is Verdict.PASSWORD_MISMATCH
    # negative and unknown-user answers use the negative TTL
    assert _verify(chain, "mallory", b"x")[1] == "miss"
    assert _verify(chain, "mallory", b"x")[1] == "hit"
    clock.now += 11
    assert _verify(chain, "mallory", b"x")[1] == "miss"
    # an outage is never cached
    backend.down = True
    calls = backend.calls
    assert _verify(chain, "bob", b"x")[0].verdict is Verdict.INTERNAL_FAILURE
    assert _verify(chain, "bob", b"x")[0].verdict is Verdict.INTERNAL_FAILURE
    assert backend.calls == calls + 2


# ---- the verifier child and its line protocol ---------------------------------------------


def test_reply_tag_carries_the_cache_state() -> None:
    for state in ("", "hit", "miss"):
        line = verifier.encode_reply(7, Lookup(Verdict.OK, backend="b", cache=state))
        assert line.startswith(b"R:" + state.encode() + b"\t" if state else b"R\t")
        assert verifier.decode_reply(line.rstrip(b"\n"))[1].cache == state
    old = b"R\t3\tok\t\tb\t0\t"
    assert verifier.decode_reply(old) == (3, Lookup(Verdict.OK, backend="b"))
    with pytest.raises(Exception, match="malformed"):
        verifier.decode_reply(b"R:bogus\t3\tok\t\tb\t0\t")


def test_child_direct_path_and_resumed_hashes(tmp_path: Path, installed: VerifyCache) -> None:
    """Cheap schemes and cache hits are answered without a task, hashes on a thread with one;
    every reply carries its own request's cache state."""
    db = _passwd(tmp_path, f"alice:{_sha512(PASSWORD)}\nbob:{{PLAIN}}bobpw\n")
    chain = Chain([db])

    async def scenario() -> list[tuple[int, Lookup]]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        proto = ChildProtocol(chain, done)
        transport = MemoryTransport()
        proto.connection_made(transport)
        assert proto._direct
        requests = [
            VerifyRequest("alice", PASSWORD),
            VerifyRequest("bob", b"bobpw"),
            VerifyRequest("alice", b"wrong"),
        ]
        proto.data_received(b"".join(verifier.encode_request(i, r) for i, r in enumerate(requests)))
        assert len(proto._tasks) == 2  # the PLAIN one was answered in place
        for _ in range(200):
            await asyncio.sleep(0.01)
            if transport.data.count(b"\n") == 4:
                break
        proto.data_received(verifier.encode_request(3, VerifyRequest("alice", PASSWORD)))
        assert not proto._tasks  # a cache hit: no task either
        await asyncio.sleep(0)
        lines = bytes(transport.data).split(b"\n")[1:-1]
        return sorted((verifier.decode_reply(line) for line in lines), key=lambda r: r[0])

    replies = asyncio.run(scenario())
    assert [(seq, r.verdict, r.cache) for seq, r in replies] == [
        (0, Verdict.OK, "miss"),
        (1, Verdict.OK, ""),
        (2, Verdict.PASSWORD_MISMATCH, "miss"),
        (3, Verdict.OK, "hit"),
    ]


# ---- flush requests and the event loop choice ---------------------------------------------


def test_flush_request_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from saslauth import flush

    monkeypatch.setenv("SASLAUTH_RUN_DIR", str(tmp_path))
    assert flush.take_request(4242) is None  # no file: everything
    path = flush.request_path(4242)
    path.write_text("alice\nbob@example.org\n")
    assert flush.take_request(4242) == ["alice", "bob@example.org"]
    assert path.read_text() == ""  # emptied: a later bare SIGUSR1 flushes everything
    assert flush.take_request(4242) is None
    path.write_text("*\n")
    assert flush.take_request(4242) is None
    with pytest.raises(SystemExit, match="no running saslauth verifier"):
        flush.find_master(1)


def test_loop_choice() -> None:
    from saslauth import loops

    assert loops.loop_factory("asyncio") is None

    async def kind() -> str:
        return loops.name()

    assert loops.run(kind, "asyncio") == "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        assert loops.loop_factory("auto") is None
        with pytest.raises(SystemExit, match="not installed"):
            loops.loop_factory("uvloop")
    else:
        assert loops.run(kind, "auto") == "uvloop"
        assert loops.run(kind, "uvloop") == "uvloop"


def test_key_is_hmac_sha256_of_the_length_prefixed_parts(clock: Clock) -> None:
    cache = VerifyCache(60, 10, 100, clock=clock)
    message = b"".join(len(p).to_bytes(4, "big") + p for p in (b"hash", b"al", b"pw", b"h"))
    expected = hmac.new(cache._key, message, hashlib.sha256).digest()
    assert cache.hash_key("al", b"pw", "h") == expected
    assert cache.hash_key("al", b"pw", "h") == expected  # the keyed template is never updated
