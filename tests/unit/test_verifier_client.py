"""Reply deadlines of the front's verifier client: one sweeping timer, no timer per request."""

from __future__ import annotations

import asyncio
import socket

import pytest

from saslauth.errors import VerifierError
from saslauth.passdb import Verdict
from saslauth.verifier import VerifyRequest, client


def test_deadlines_without_and_with_a_silent_verifier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "ATTACH_WAIT", 0.2)
    monkeypatch.setattr(client, "REPLY_TIMEOUT", 0.4)
    monkeypatch.setattr(client, "SWEEP_EVERY", 0.05)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        verifier = client.VerifierClient()
        waiting = verifier.verify(VerifyRequest("alice", b"pw"))
        with pytest.raises(VerifierError, match="did not start in time"):
            await asyncio.wait_for(waiting, 2)
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        await verifier.attach(ours)
        await loop.sock_sendall(theirs, b"READY\t1\n")
        await asyncio.sleep(0.05)
        assert verifier.connected
        started = loop.time()
        silent = verifier.verify(VerifyRequest("alice", b"pw"))
        answered = verifier.verify(VerifyRequest("bob", b"pw"))
        await asyncio.sleep(0.05)
        await loop.sock_sendall(theirs, b"R\t3\tok\t\tfile\t0\t\n")
        assert (await asyncio.wait_for(answered, 2)).verdict is Verdict.OK
        with pytest.raises(VerifierError, match="did not answer in time"):
            await asyncio.wait_for(silent, 2)
        assert 0.35 <= loop.time() - started < 1.0
        assert verifier._sweeper is None  # nothing pending: no timer left running
        verifier.close()
        theirs.close()

    asyncio.run(scenario())


def test_submit_answers_each_request_once_and_a_failing_callback_costs_no_other() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        verifier = client.VerifierClient()
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        await verifier.attach(ours)
        await loop.sock_sendall(theirs, b"READY\t1\n")
        await asyncio.sleep(0.05)
        answers: list[tuple[str, object]] = []

        def broken(result: object) -> None:
            answers.append(("broken", result))
            raise RuntimeError("a bug in one requester")

        verifier.submit(VerifyRequest("alice", b"pw"), broken)
        verifier.submit(VerifyRequest("bob", b"pw"), lambda r: answers.append(("bob", r)))
        verifier.submit(VerifyRequest("carol", b"pw"), lambda r: answers.append(("carol", r)))
        await asyncio.sleep(0.05)
        sent = theirs.recv(4096).split(b"\n")
        assert [line.split(b"\t")[:3] for line in sent if line] == [
            [b"V", b"1", b"alice"],
            [b"V", b"2", b"bob"],
            [b"V", b"3", b"carol"],
        ]
        # all three answers in one read; the same sequence number twice is answered once
        await loop.sock_sendall(
            theirs,
            b"R\t1\tok\t\tfile\t0\t\nR\t2\tmismatch\t\tfile\t0\t\n"
            b"R\t3\tok\t\tfile\t0\t\nR\t3\tok\t\tfile\t0\t\n",
        )
        await asyncio.sleep(0.05)
        names = [name for name, _ in answers]
        assert names == ["broken", "bob", "carol"]
        verdicts = [getattr(result, "verdict", None) for _, result in answers]
        assert verdicts == [Verdict.OK, Verdict.PASSWORD_MISMATCH, Verdict.OK]
        assert verifier.connected  # the requester's bug did not drop the verifier link
        verifier.close()
        theirs.close()

    asyncio.run(scenario())
