"""The master's reading of its fronts' control lines (``Fronts.receive``): a front is less
privileged than the master, so what it sends is bounded before anything parses it."""

from __future__ import annotations

import logging
import socket

import pytest

from saslauth.fronts import MAX_CONTROL_LINE, FrontProc, Fronts


def _pair(fronts: Fronts) -> tuple[socket.socket, socket.socket]:
    """(the master's end, the front's end) of front 1's control socket."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    fronts.procs[0].control = ours
    return ours, theirs


def test_lines_are_read_whole_across_reads() -> None:
    fronts = Fronts(1)
    ours, theirs = _pair(fronts)
    theirs.sendall(b"RESTART 12\nREA")
    assert [(word, arg) for _, word, arg in fronts.receive([ours])] == [("RESTART", "12")]
    theirs.sendall(b"DY\nPONG\n")
    assert [(word, arg) for _, word, arg in fronts.receive([ours])] == [("READY", ""), ("PONG", "")]
    theirs.close()
    ours.close()


@pytest.mark.parametrize(
    "data",
    [
        b"RESTART " + b"9" * 5000 + b"\n",  # a number int() would refuse (over 4300 digits)
        b"RESTART " + b"9" * MAX_CONTROL_LINE,  # no end of line in sight
        b"RESTART " + b"9" * MAX_CONTROL_LINE + b"\n",  # a whole line, in one read
    ],
    ids=["huge-line", "no-newline", "long-line"],
)
def test_an_overlong_control_line_closes_that_front(
    data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    fronts = Fronts(1)
    ours, theirs = _pair(fronts)
    front = fronts.procs[0]
    messages: list[tuple[FrontProc, str, str]] = []
    with caplog.at_level(logging.ERROR, logger="saslauth"):
        theirs.sendall(b"PONG\n" + data)
        for _ in range(10):  # (a few reads: the socket holds at most two of them)
            if front.control is None:
                break
            messages += fronts.receive([ours])
    assert [word for _, word, _ in messages] == []  # nothing from a read with garbage in it
    assert front.control is None and _closed(theirs)  # the front sees its control socket go
    assert "longer than" in caplog.text
    theirs.close()


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:  # closed with what it sent still unread
        return True
