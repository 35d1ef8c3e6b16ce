"""Fronts share the listening socket evenly, and never wait long for one another."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from saslauth import accept


class Counting(asyncio.Protocol):
    made = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        Counting.made += 1


def _listener(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(64)
    return sock


def _connect(path: Path, count: int) -> list[socket.socket]:
    clients = []
    for _ in range(count):
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(path))
        clients.append(client)
    return clients


async def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.001)):
        if condition():
            return
        await asyncio.sleep(0.001)


def test_two_fronts_take_a_burst_in_turns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accept, "MAX_DEFER", 5.0)  # the first front never gives up waiting here

    async def scenario() -> tuple[int, int]:
        shares = accept.Shares(2)
        balances = [accept.Balance(shares, 0), accept.Balance(shares, 1)]
        sock = _listener(tmp_path / "s")
        clients = _connect(tmp_path / "s", 20)  # all pending before either front runs
        # one descriptor each, as in two processes (a loop has one reader per descriptor);
        # the second front starts late: without the shares the first would take them all
        socks = [sock, sock.dup()]
        acceptors = [accept.Acceptor(socks[0], Counting, balances[0])]
        await _until(lambda: balances[0].held == accept.SLACK + 1)
        await asyncio.sleep(0.05)
        assert balances[0].held == accept.SLACK + 1  # its share above the other's 0, no more
        acceptors.append(accept.Acceptor(socks[1], Counting, balances[1]))
        await _until(lambda: sum(b.held for b in balances) == 20)
        for acceptor in acceptors:
            acceptor.close()
        for client in clients:
            client.close()
        for sock in socks:
            sock.close()
        assert (shares.get(0), shares.get(1)) == (balances[0].held, balances[1].held)
        return balances[0].held, balances[1].held

    first, second = asyncio.run(scenario())
    assert first + second == 20 and abs(first - second) <= accept.SLACK + 1


def test_a_front_that_never_accepts_holds_nobody_up_for_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accept, "MAX_DEFER", 0.5)  # wide margins on a busy test machine

    async def scenario() -> list[float]:
        loop = asyncio.get_running_loop()
        shares = accept.Shares(2)  # front 1 exists but never accepts: its count stays 0
        balance = accept.Balance(shares, 0)
        sock = _listener(tmp_path / "s")
        clients = _connect(tmp_path / "s", 10)
        started = loop.time()
        acceptor = accept.Acceptor(sock, Counting, balance)
        seen: list[float] = []
        while balance.held < 10 and loop.time() - started < 5:
            held = balance.held
            await asyncio.sleep(0.001)
            seen.extend(loop.time() - started for _ in range(balance.held - held))
        acceptor.close()
        for client in clients:
            client.close()
        sock.close()
        return seen

    seen = asyncio.run(scenario())
    assert len(seen) == 10
    fair = accept.SLACK + 1  # taken at once: up to its share above the idle front's 0
    assert all(moment < accept.MAX_DEFER for moment in seen[:fair])
    assert seen[fair] >= accept.MAX_DEFER * 0.9  # the rest waited for the other front ...
    assert seen[-1] < accept.MAX_DEFER + 2  # ... but not long: then it took them all


def test_one_front_alone_never_defers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(accept.Acceptor, "_pause", lambda self, delay: pauses.append(delay))

    async def scenario() -> int:
        balance = accept.Balance(accept.Shares(1), 0)
        sock = _listener(tmp_path / "s")
        clients = _connect(tmp_path / "s", 10)
        acceptor = accept.Acceptor(sock, Counting, balance)
        await _until(lambda: balance.held == 10)
        acceptor.close()
        for client in clients:
            client.close()
        sock.close()
        return balance.held

    assert asyncio.run(scenario()) == 10
    assert pauses == []  # one front has nobody to leave a connection to


def test_out_of_descriptors_pauses_accepting_then_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accept, "RETRY_AFTER", 0.05)

    class Exhausted(socket.socket):
        failures = 1

        def accept(self) -> tuple[socket.socket, object]:
            if Exhausted.failures:
                Exhausted.failures -= 1
                raise OSError(errno.EMFILE, "Too many open files")
            return super().accept()

    async def scenario() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        plain = _listener(tmp_path / "s")
        sock = Exhausted(fileno=plain.detach())
        balance = accept.Balance()
        clients = _connect(tmp_path / "s", 3)
        started = loop.time()
        acceptor = accept.Acceptor(sock, Counting, balance)
        for _ in range(2000):
            if balance.held == 3:
                break
            await asyncio.sleep(0.001)
        took = loop.time() - started
        acceptor.close()
        for client in clients:
            client.close()
        sock.close()
        return balance.held, took

    held, took = asyncio.run(scenario())
    assert held == 3  # nothing lost: the pending connections waited in the backlog
    assert accept.RETRY_AFTER <= took < accept.RETRY_AFTER + 1  # after one pause, not a spin


def test_a_connection_lost_before_its_transport_is_not_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> int:
        loop = asyncio.get_running_loop()

        async def refuse(*_args: object, **_kwargs: object) -> object:
            raise ConnectionResetError("gone")

        monkeypatch.setattr(loop, "connect_accepted_socket", refuse)
        sock = _listener(tmp_path / "s")
        balance = accept.Balance()
        clients = _connect(tmp_path / "s", 2)
        acceptor = accept.Acceptor(sock, Counting, balance)
        for _ in range(50):
            await asyncio.sleep(0.001)
        acceptor.close()
        for client in clients:
            client.close()
        sock.close()
        return balance.held

    assert asyncio.run(scenario()) == 0
