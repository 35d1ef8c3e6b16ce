"""VerifierClient hands over to a new verifier without losing what the old one was sent."""

from __future__ import annotations

import asyncio
import socket

import pytest

from saslauth import verifier
from saslauth.errors import VerifierError
from saslauth.passdb import Lookup, Verdict
from saslauth.verifier import client as client_module
from saslauth.verifier.client import VerifierClient


class Child:
    """The test plays a verifier child on the other end of a socketpair."""

    def __init__(self) -> None:
        self.ours, self.theirs = socket.socketpair()
        self.ours.setblocking(False)
        self.reader = verifier.LineReader()

    async def say(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.ours, data)

    async def requests(self, count: int) -> list[int]:
        seqs: list[int] = []
        while len(seqs) < count:
            data = await asyncio.get_running_loop().sock_recv(self.ours, 65536)
            assert data, "closed while requests were expected"
            seqs += [verifier.decode_request(line)[0] for line in self.reader.feed(data)]
        return seqs

    async def answer(self, seq: int) -> None:
        await self.say(verifier.encode_reply(seq, Lookup(Verdict.OK, backend="t")))

    def still_open(self) -> bool:
        try:
            return self.ours.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except BlockingIOError:  # open, nothing to read
            return True

    async def closed(self) -> bool:
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(self.ours, 100), 2)
        return data == b""


def test_reload_handover_keeps_requests_in_flight() -> None:
    async def main() -> None:
        broken: list[bool] = []
        client = VerifierClient(on_broken=lambda: broken.append(True))
        old, new = Child(), Child()
        await client.attach(old.theirs)
        await old.say(b"READY\t1\n")
        first = client.verify(verifier.VerifyRequest("bob", b"pw"))
        (seq_first,) = await old.requests(1)

        swap = asyncio.ensure_future(client.replace(new.theirs))
        await asyncio.sleep(0.05)
        assert not swap.done()  # not READY yet: the old verifier still takes requests
        await new.say(b"READY\t2\n")
        assert await swap
        second = client.verify(verifier.VerifyRequest("carol", b"pw"))
        (seq_second,) = await new.requests(1)  # new requests go to the new verifier
        assert not first.done()
        await old.answer(seq_first)  # the old one answers what it had...
        assert (await first).verdict is Verdict.OK
        assert await old.closed()  # ...and is then closed, so it exits
        await new.answer(seq_second)
        assert (await second).verdict is Verdict.OK
        assert broken == []  # retiring the old verifier is not a breakdown
        client.close()
        old.ours.close()
        new.ours.close()

    asyncio.run(main())


def test_new_verifier_that_dies_before_ready_changes_nothing() -> None:
    async def main() -> None:
        client = VerifierClient()
        old, new = Child(), Child()
        await client.attach(old.theirs)
        await old.say(b"READY\t1\n")
        swap = asyncio.ensure_future(client.replace(new.theirs))
        await asyncio.sleep(0.05)
        new.ours.close()
        assert await swap is False
        request = client.verify(verifier.VerifyRequest("bob", b"pw"))
        (seq,) = await old.requests(1)
        await old.answer(seq)
        assert (await request).verdict is Verdict.OK
        client.close()
        old.ours.close()

    asyncio.run(main())


def test_retired_verifier_crashing_fails_only_its_requests() -> None:
    async def main() -> None:
        client = VerifierClient()
        old, new = Child(), Child()
        await client.attach(old.theirs)
        await old.say(b"READY\t1\n")
        first = client.verify(verifier.VerifyRequest("bob", b"pw"))
        await old.requests(1)
        swap = asyncio.ensure_future(client.replace(new.theirs))
        await asyncio.sleep(0)
        await new.say(b"READY\t2\n")
        assert await swap
        old.ours.close()  # the retired child dies with a request in flight
        with pytest.raises(VerifierError, match="went away"):
            await asyncio.wait_for(first, 1)  # at once, not after REPLY_TIMEOUT
        assert client.connected
        client.close()
        new.ours.close()

    asyncio.run(main())


def test_a_verifier_handed_earlier_never_supersedes_a_later_one() -> None:
    """The master's order wins: an earlier verifier that says READY after a later one took
    over is dropped (a stale reload's, say), and the pid of the one in use is known."""

    async def main() -> None:
        client = VerifierClient()
        stale, fresh = Child(), Child()
        swap = asyncio.ensure_future(client.replace(stale.theirs))
        await asyncio.sleep(0)
        await client.attach(fresh.theirs)
        await fresh.say(b"READY\t20\n")
        await asyncio.sleep(0.05)
        assert client.connected and client.pid == 20
        await stale.say(b"READY\t10\n")
        assert await swap is False
        assert await stale.closed()
        request = client.verify(verifier.VerifyRequest("bob", b"pw"))
        (seq,) = await fresh.requests(1)
        await fresh.answer(seq)
        assert (await request).verdict is Verdict.OK
        assert client.pid == 20
        client.close()
        stale.ours.close()
        fresh.ours.close()

    asyncio.run(main())


def test_retired_verifiers_close_once_each_owes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two handovers in a row: each retired child is closed when its last request ends, by an
    answer or by its deadline, and not before; the one taking requests stays open."""
    monkeypatch.setattr(client_module, "REPLY_TIMEOUT", 0.3)
    monkeypatch.setattr(client_module, "ATTACH_WAIT", 0.3)  # (READY may not be read yet)
    monkeypatch.setattr(client_module, "SWEEP_EVERY", 0.05)

    async def main() -> None:
        client = VerifierClient()
        first, second, third = Child(), Child(), Child()
        await client.attach(first.theirs)
        await first.say(b"READY\t1\n")
        silent = client.verify(verifier.VerifyRequest("bob", b"pw"))  # never answered
        await first.requests(1)
        swap = asyncio.ensure_future(client.replace(second.theirs))
        await asyncio.sleep(0)
        await second.say(b"READY\t2\n")
        assert await swap
        waiting = [client.verify(verifier.VerifyRequest(f"u{n}", b"pw")) for n in range(2)]
        seqs = await second.requests(2)
        swap = asyncio.ensure_future(client.replace(third.theirs))
        await asyncio.sleep(0)
        await third.say(b"READY\t3\n")
        assert await swap
        await second.answer(seqs[0])
        assert (await waiting[0]).verdict is Verdict.OK
        await asyncio.sleep(0.05)
        assert second.still_open()  # it owes an answer yet
        await second.answer(seqs[1])
        assert (await waiting[1]).verdict is Verdict.OK
        assert await second.closed()  # answered all it was sent
        with pytest.raises(VerifierError, match="did not answer in time"):
            await asyncio.wait_for(silent, 2)
        assert await first.closed()  # its last request ended by the deadline
        request = client.verify(verifier.VerifyRequest("carol", b"pw"))
        (seq,) = await third.requests(1)
        await third.answer(seq)
        assert (await request).verdict is Verdict.OK
        assert client._retiring == []
        client.close()
        for child in (first, second, third):
            child.ours.close()

    asyncio.run(main())
