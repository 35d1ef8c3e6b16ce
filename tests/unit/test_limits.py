"""Limiter arithmetic with an injected clock, the memory store, the verify wrapper, config."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from saslauth import config
from saslauth.errors import ConfigError
from saslauth.limits.keys import Fingerprints, Keys, client_network
from saslauth.limits.limiter import Limiter
from saslauth.limits.policy import Decision, Snapshot, decayed, decide, delay_for
from saslauth.limits.settings import Distinct, LimitsSettings, Rule
from saslauth.limits.store import MemoryStore
from saslauth.passdb import Lookup, Verdict
from saslauth.verifier import VerifyRequest

FD = 2.0  # failure_delay
# Explicit rules, so the tests do not move with the defaults.
S = LimitsSettings(
    network=Rule(free=5, refuse=30, window=600),
    user=Rule(free=3, refuse=10, window=3600),
    pair=Rule(free=2, refuse=10, window=600),
    spray_users=Distinct(refuse=10, window=600),
    spray_password=Distinct(refuse=10, window=3600),
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def req(user: str, password: str, rip: str | None = "198.51.100.7") -> VerifyRequest:
    return VerifyRequest(user, password.encode(), "smtp", rip, "192.0.2.1", False)


T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def attempt(limiter: Limiter, request: VerifyRequest, verdict: Verdict) -> Decision:
    """Check, then record the verdict the passdb would have given (no waiting)."""
    keys, decision = await limiter.check(request)
    if keys is not None and not decision.refused:
        await limiter.record(keys, request, Lookup(verdict))
    return decision


# ---- pure arithmetic -------------------------------------------------------------------------
def test_decay_is_linear_and_never_negative_nor_growing_backwards() -> None:
    assert decayed(5.0, 100.0, 160.0, 0.05) == pytest.approx(2.0)
    assert decayed(5.0, 100.0, 1000.0, 0.05) == 0.0
    assert decayed(5.0, 100.0, 50.0, 0.05) == 5.0  # clock went back: no leak, no growth


def test_delay_doubles_from_free() -> None:
    rule = Rule(free=5, refuse=30, window=600)
    assert [delay_for(n, rule, 0.25) for n in range(4, 10)] == [0, 0.25, 0.5, 1, 2, 4]
    assert delay_for(10_000, rule, 0.25) > 1e6  # no overflow; decide() caps it


def test_decide_caps_delay_so_the_answer_fits_in_max_delay() -> None:
    decision = decide(Snapshot(network=20), S, FD)
    assert decision == Decision(delay=S.max_delay - FD, reason="network")
    assert decision.log_text == "delay:6.00s:network"
    assert decide(Snapshot(network=30), S, FD) == Decision(refused=True, reason="network")
    assert decide(Snapshot(network=30), S, FD).log_text == "refused:network"
    assert decide(Snapshot(), S, FD).log_text is None


def test_recent_success_exempts_from_network_user_and_spraying_but_not_pair() -> None:
    heavy = Snapshot(network=100, user=100, spray_users=100, spray_password=100)
    assert decide(heavy, S, FD).refused
    exempt = Snapshot(network=100, user=100, spray_users=100, spray_password=100,
                      recent_success=True)
    assert decide(exempt, S, FD) == Decision()
    assert decide(Snapshot(pair=10, recent_success=True), S, FD).reason == "pair"


def test_spraying_counts_refuse() -> None:
    assert decide(Snapshot(spray_users=10), S, FD) == Decision(refused=True, reason="spray-users")
    assert decide(Snapshot(spray_password=10), S, FD).reason == "spray-password"
    assert decide(Snapshot(spray_users=9, spray_password=9), S, FD) == Decision()


# ---- keys -----------------------------------------------------------------------------------
def test_networks_ipv4_ipv6_prefixes_and_unusable_rips() -> None:
    assert str(client_network("203.0.113.9", 32, 64)) == "203.0.113.9/32"
    assert str(client_network("203.0.113.9", 24, 64)) == "203.0.113.0/24"
    assert str(client_network("2001:db8:7:2::5", 32, 64)) == "2001:db8:7:2::/64"
    assert str(client_network("2001:db8:7:2::5", 32, 48)) == "2001:db8:7::/48"
    assert str(client_network("::ffff:203.0.113.9", 32, 64)) == "203.0.113.9/32"
    for bad in (None, "", "unknown", "300.1.1.1"):
        assert client_network(bad, 32, 64) is None
    assert Keys.of(None, "alice").network == "net:-"


def test_fingerprints_are_keyed_and_hide_the_key() -> None:
    a, b = Fingerprints(), Fingerprints()
    assert a.of(b"pw") == a.of(b"pw") != b.of(b"pw")
    assert a.of(b"ab", b"c") != a.of(b"a", b"bc")
    assert "key hidden" in repr(a)


# ---- the limiter with the memory store ---------------------------------------------------------
def test_brute_force_one_user_from_one_address() -> None:
    clock = Clock()
    limiter = Limiter(S, FD, clock=clock)

    async def go() -> list[Decision]:
        return [await attempt(limiter, req("alice", f"guess{i}"), Verdict.PASSWORD_MISMATCH)
                for i in range(12)]

    decisions = run(go())
    # pair: free 2 -> 0.25, 0.5, 1, ...; user: free 3; refused once 10 distinct guesses failed
    assert [d.delay for d in decisions[:10]] == [0, 0, 0.25, 0.5, 1, 2, 4, 6, 6, 6]
    assert [d.log_text for d in decisions[10:]] == ["refused:pair", "refused:pair"]


def test_brute_force_many_users_from_one_address_hits_the_network_score() -> None:
    clock = Clock()
    limiter = Limiter(S.model_copy(update={"spray_users": S.spray_users.model_copy(
        update={"refuse": 1000})}), FD, clock=clock)

    async def go() -> list[Decision]:
        return [await attempt(limiter, req(f"user{i}", f"guess{i}"), Verdict.USER_UNKNOWN)
                for i in range(32)]

    decisions = run(go())
    assert [d.delay for d in decisions[:8]] == [0, 0, 0, 0, 0, 0.25, 0.5, 1]
    assert all(d.delay == 6 for d in decisions[10:30])
    assert [d.log_text for d in decisions[30:]] == ["refused:network"] * 2
    # the score leaks: refuse/window = 30 per 10 min = one guess every 20 s
    clock.now += 20
    assert not run(limiter.check(req("other", "x")))[1].refused


def test_same_wrong_password_counts_once() -> None:
    limiter = Limiter(S, FD, clock=Clock())

    async def go() -> tuple[list[Decision], Snapshot]:
        out = [await attempt(limiter, req("alice", "old-password"), Verdict.PASSWORD_MISMATCH)
               for _ in range(50)]
        return out, await limiter.snapshot(req("alice", "x"))

    decisions, snapshot = run(go())
    assert all(d == Decision() for d in decisions)
    assert (snapshot.network, snapshot.user, snapshot.pair) == (1, 1, 1)


def test_repeat_memory_is_bounded_and_holds_no_password() -> None:
    limiter = Limiter(S, FD, clock=Clock())

    async def go() -> None:
        for i in range(20):
            await attempt(limiter, req("alice", f"secret-{i}"), Verdict.PASSWORD_MISMATCH)

    run(go())
    for key in ("pair:198.51.100.7/32|alice", "user:alice"):
        recent = limiter._recent.get(key, Clock().now)
        assert recent is not None and len(recent) == S.repeat_memory
        assert not any(b"secret" in fp for fp, _ in recent)
    dump = repr(vars(limiter)) + repr(vars(limiter.store))
    assert "secret-" not in dump


def test_success_resets_network_and_pair_and_exempts_the_pair() -> None:
    limiter = Limiter(S, FD, clock=Clock())

    async def go() -> tuple[Snapshot, Decision]:
        for i in range(8):
            await attempt(limiter, req("alice", f"typo{i}"), Verdict.PASSWORD_MISMATCH)
        await attempt(limiter, req("alice", "right"), Verdict.OK)
        snap = await limiter.snapshot(req("alice", "x"))
        # colleagues behind the same address hammer the network score ...
        for i in range(40):
            await attempt(limiter, req(f"colleague{i}", "x"), Verdict.PASSWORD_MISMATCH)
        return snap, (await limiter.check(req("alice", "right")))[1]

    snap, later = run(go())
    assert (snap.network, snap.pair, snap.recent_success) == (0, 0, True)
    assert snap.user == 8  # guesses at the user are not forgiven by a success
    assert later == Decision()  # ... but alice, who logged in from there, is not slowed down


def test_password_spraying_over_many_users_and_addresses() -> None:
    limiter = Limiter(S, FD, clock=Clock())

    async def go() -> list[Decision]:
        out = []
        for i in range(100):
            rip = f"203.0.113.{i % 50}"
            request = req(f"u{i}", "Summer2024!", rip)
            out.append(await attempt(limiter, request, Verdict.USER_UNKNOWN))
        return out

    decisions = run(go())
    assert all(not d.refused for d in decisions[:10])
    assert {d.log_text for d in decisions[10:]} == {"refused:spray-password"}


def test_distinct_users_from_one_network() -> None:
    limiter = Limiter(S, FD, clock=Clock())

    async def go() -> list[Decision]:
        return [await attempt(limiter, req(f"u{i}", f"p{i}"), Verdict.USER_UNKNOWN)
                for i in range(12)]

    decisions = run(go())
    assert [d.refused for d in decisions] == [False] * 10 + [True] * 2
    assert decisions[10].reason == "spray-users"


def test_trusted_networks_and_ipv6_grouping_and_no_rip() -> None:
    settings = S.model_copy(
        update={
            "trusted_networks": (ipaddress.ip_network("10.0.0.0/8"),),
            "spray_users": Distinct(refuse=1000, window=600),
        }
    )
    limiter = Limiter(settings, FD, clock=Clock())

    async def go() -> tuple[Decision, Snapshot, Snapshot, Snapshot, Snapshot]:
        for i in range(40):
            await attempt(limiter, req(f"u{i}", "x", "10.1.2.3"), Verdict.PASSWORD_MISMATCH)
            await attempt(limiter, req(f"v{i}", f"x{i}", "2001:db8:7:2::5"), Verdict.USER_UNKNOWN)
            await attempt(limiter, req(f"w{i}", f"x{i}", None), Verdict.USER_UNKNOWN)
        return (
            (await limiter.check(req("u1", "x", "10.1.2.3")))[1],
            await limiter.snapshot(req("a", "x", "2001:db8:7:2:ffff::77")),
            await limiter.snapshot(req("a", "x", "2001:db8:7:3::1")),
            await limiter.snapshot(req("a", "x", "")),
            await limiter.snapshot(req("a", "x", "10.1.2.3")),
        )

    trusted, same64, other64, norip, trusted_snap = run(go())
    assert trusted == Decision() and trusted_snap == Snapshot()
    assert same64.network == 30 and other64.network == 0  # refused attempts are not counted
    assert norip.network == 30  # every request without a usable rip shares one budget


def test_tempfail_and_nodelay_are_not_guesses() -> None:
    limiter = Limiter(S, FD, clock=Clock())

    async def go() -> Snapshot:
        for i in range(20):
            keys, _ = await limiter.check(req("alice", f"p{i}"))
            assert keys is not None
            await limiter.record(keys, req("alice", f"p{i}"), Lookup(Verdict.INTERNAL_FAILURE))
            await limiter.record(keys, req("alice", f"q{i}"),
                                 Lookup(Verdict.PASSWORD_MISMATCH, nodelay=True))
        return await limiter.snapshot(req("alice", "x"))

    assert run(go()) == Snapshot()


# ---- the verify wrapper (real, short delays) -----------------------------------------------
FAST = S.model_copy(
    update={"max_delay": 0.6, "base_delay": 0.1, "pair": Rule(free=1, refuse=3, window=600)}
)


def test_wrapper_delays_refuses_and_never_exceeds_max_delay() -> None:
    limiter = Limiter(FAST, 0.2)
    calls: list[str] = []

    def inner(request: VerifyRequest) -> asyncio.Future[Lookup]:
        calls.append(request.user)
        future: asyncio.Future[Lookup] = asyncio.get_running_loop().create_future()
        future.set_result(Lookup(Verdict.PASSWORD_MISMATCH))
        return future

    async def go() -> list[tuple[float, Lookup]]:
        out = []
        for i in range(5):
            start = time.monotonic()
            lookup = await limiter.verify(inner, req("alice", f"p{i}"))
            out.append((time.monotonic() - start, lookup))
            await asyncio.sleep(0.01)  # let the recording task run
        return out

    results = run(go())
    texts = [lookup.limited for _, lookup in results]
    assert texts == [None, "delay:0.10s:pair", "delay:0.20s:pair", "refused:pair", "refused:pair"]
    assert [lookup.verdict for _, lookup in results[3:]] == [Verdict.RATE_LIMITED] * 2
    assert len(calls) == 3  # refused attempts never reach the passdb
    assert results[0][0] < 0.1  # no penalty: the session applies failure_delay itself
    assert 0.3 <= results[1][0] < 0.45  # penalty 0.1 + failure delay 0.2, held here
    assert 0.4 <= results[2][0] < 0.55
    assert all(elapsed <= FAST.max_delay for elapsed, _ in results)


def test_wrapper_cuts_a_slow_backend_at_max_delay() -> None:
    limiter = Limiter(FAST, 0.2)

    def slow(request: VerifyRequest) -> asyncio.Future[Lookup]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Lookup] = loop.create_future()
        loop.call_later(2.0, future.set_result, Lookup(Verdict.OK))
        return future

    async def go() -> tuple[float, Lookup]:
        keys = limiter.keys(req("bob", "x"))
        assert keys is not None
        await limiter.store.failure(keys, time.time(), network=False, user=False, pair=True)
        await limiter.store.failure(keys, time.time(), network=False, user=False, pair=True)
        start = time.monotonic()
        lookup = await limiter.verify(slow, req("bob", "x"))
        return time.monotonic() - start, lookup

    elapsed, lookup = run(go())
    assert lookup.verdict is Verdict.INTERNAL_FAILURE and lookup.limited == "delay:0.20s:pair"
    assert FAST.max_delay - 0.05 <= elapsed <= FAST.max_delay + 0.1


def test_redis_unreachable_falls_back_to_memory_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("redis")
    from tests.fixtures.ports import free_tcp_port

    settings = LimitsSettings(backend="redis", url=f"redis://:topsecret@127.0.0.1:{free_tcp_port()}/0")
    limiter = Limiter(settings, FD, clock=Clock())

    async def go() -> Snapshot:
        for i in range(5):
            await attempt(limiter, req("alice", f"p{i}"), Verdict.PASSWORD_MISMATCH)
        snapshot = await limiter.snapshot(req("alice", "x"))
        await limiter.close()
        return snapshot

    with caplog.at_level(logging.WARNING, "saslauth.limits"):
        snapshot = run(go())
    assert snapshot.pair == 5  # counted locally
    warnings = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1 and "topsecret" not in warnings[0] and ":***@" in warnings[0]


# ---- configuration ------------------------------------------------------------------------
BASE = "listen: [{path: /tmp/x}]\npassdb: [{driver: passwd-file, path: x}]\n"


def _errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.parse(BASE + text, "s.yaml")
    return [f"{key}: {message}" for _f, _l, key, message in info.value.problems]


def test_defaults_never_let_one_user_slow_down_a_shared_address() -> None:
    defaults = LimitsSettings()
    assert defaults.network.free >= defaults.pair.refuse
    assert defaults.network.free >= defaults.user.refuse
    assert defaults.max_delay < 10


def test_config_defaults_and_absence() -> None:
    assert config.parse(BASE, "s.yaml").limits is None
    parsed = config.parse(BASE + "limits: {}\n", "s.yaml").limits
    assert parsed == LimitsSettings()
    tuned = config.parse(
        BASE + "failure_delay: 200ms\nlimits:\n  max_delay: 1s\n"
        "  network: {free: 1, refuse: 4, window: 1m}\n"
        "  trusted_networks: [10.0.0.0/8, '2001:db8::/32']\n", "s.yaml"
    ).limits
    assert tuned is not None and tuned.network.window == 60 and len(tuned.trusted_networks) == 2


def test_config_rejects_delays_postfix_would_not_wait_for() -> None:
    assert any("under 10s" in e for e in _errors("limits: {max_delay: 10s}\n"))
    problems = _errors("failure_delay: 3s\nlimits: {max_delay: 2s}\n")
    assert any(e.startswith("limits:") and "failure_delay" in e for e in problems)
    assert any("url" in e for e in _errors("limits: {backend: redis}\n"))
    assert any("free must not exceed refuse" in e
               for e in _errors("limits: {user: {free: 5, refuse: 2, window: 1h}}\n"))
    assert any("limits.nonsense" in e for e in _errors("limits: {nonsense: 1}\n"))


def test_parallel_attempts_count_while_in_flight() -> None:
    limiter = Limiter(FAST, 0.2)

    def inner(request: VerifyRequest) -> asyncio.Future[Lookup]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Lookup] = loop.create_future()
        loop.call_later(0.05, future.set_result, Lookup(Verdict.PASSWORD_MISMATCH))
        return future

    async def go() -> list[Lookup]:
        return list(await asyncio.gather(
            *(limiter.verify(inner, req("alice", f"p{i}")) for i in range(8))
        ))

    lookups = run(go())
    assert sum(lookup.verdict is Verdict.RATE_LIMITED for lookup in lookups) == 5
    assert limiter._inflight == {}


def test_simulator_with_the_defaults() -> None:
    from saslauth.limits.simulate import simulate

    def sim(name: str, minutes: float = 30.0) -> tuple[int, float, bool]:
        result = run(simulate(LimitsSettings(), 2.0, name, minutes, 2))
        return result.verified, result.legit_delay, result.legit_refused

    brute = sim("brute force: 1 address, 1 user")
    assert brute[0] <= 16 and brute[1:] == (0.0, False)  # the real user at home: no delay
    assert sim("spraying: 1 password, 50 addresses", 3.0)[0] == 10
    assert sim("same wrong password repeated")[1:] == (0.0, False)
    assert sim("office: one user mistyping (4 pw)")[1:] == (0.0, False)


def test_example_lists_the_defaults() -> None:
    import yaml

    from tests.fixtures.saslauth import REPO

    data = yaml.safe_load((REPO / "examples" / "limits.yaml").read_text())["limits"]
    assert LimitsSettings.model_validate(data) == LimitsSettings()


# ---- username hygiene (before any backend or limiter sees a name) -------------------------
def test_usernames_too_long_or_not_utf8_are_refused() -> None:
    from saslauth.usernames import UsernamePolicy
    from saslauth.wire import decode_text

    policy = UsernamePolicy(allowed_chars=frozenset(map(chr, range(32, 0x3000))))
    assert policy.identify("a" * 255).valid
    assert not policy.identify("a" * 256).valid
    assert not UsernamePolicy(max_length=10, default_domain="example.org").identify("bob").valid
    assert policy.identify(decode_text("jürgen".encode())).valid
    bad = decode_text(b"j\xfcrgen")  # Latin-1, not UTF-8
    assert not policy.identify(bad).valid and policy.identify(bad).original == bad


def test_saslprep_rfc4013_examples_and_the_option() -> None:
    from saslauth.saslprep import saslprep, saslprep_bytes
    from saslauth.usernames import UsernamePolicy

    assert [saslprep(s) for s in ("I\u00adX", "user", "USER", "\u00aa", "\u2168")] == [
        "IX", "user", "USER", "a", "IX"
    ]
    assert saslprep("\u0007") is None and saslprep("\u0627\u0031") is None
    assert saslprep_bytes(b"caf\xe9") is None and saslprep_bytes("p\u00a0w".encode()) == b"p w"
    policy = UsernamePolicy(saslprep=True, allowed_chars=frozenset("abcdefIX"))
    assert policy.identify("I\u00adX").user == "ix" and not policy.identify("a\u0007").valid
    assert policy.prepare_password("\u2168".encode()) == b"IX"
    assert UsernamePolicy().prepare_password(b"\xff") is None  # not UTF-8: refused by default
    legacy = UsernamePolicy(utf8_passwords=False)
    assert legacy.prepare_password(b"\xff") == b"\xff"  # opt-out: bytes as sent (Dovecot)


def test_saslprep_in_plain_and_login() -> None:
    from saslauth.mechanisms import Failure, Success
    from saslauth.mechanisms.login import Login
    from saslauth.mechanisms.plain import Plain
    from saslauth.usernames import UsernamePolicy
    from tests.unit.test_mechanisms import run as drive

    policy = UsernamePolicy(saslprep=True)
    _, verifies, outcome = drive(Plain(policy), "\0alice\0se\u00adcret".encode(), [])
    assert [v.password for v in verifies] == [b"secret"] and isinstance(outcome, Success)
    _, verifies, outcome = drive(Login(policy), b"alice", ["bad\u0007pw".encode()])
    assert verifies == [] and isinstance(outcome, Failure) and outcome.identity is not None


def test_tables_stay_bounded_under_many_addresses() -> None:
    settings = S.model_copy(update={"max_entries": 100})
    limiter = Limiter(settings, FD, clock=Clock())

    async def go() -> None:
        for i in range(1000):
            rip = f"2001:db8:{i}::1"
            await attempt(limiter, req(f"u{i}", f"p{i}", rip), Verdict.USER_UNKNOWN)

    run(go())
    store = limiter.store
    assert isinstance(store, MemoryStore)
    assert max(len(store.scores), len(store.sets), len(limiter._recent)) <= 100
    assert len(limiter._passwords) <= 100
