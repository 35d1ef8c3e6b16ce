"""pin_fronts: the CPU each front takes, pinning for real in a child process, and a front that
cannot be pinned serving unpinned."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from saslauth import affinity


def test_cpu_for_takes_the_allowed_cpus_in_order_round_robin() -> None:
    assert [affinity.cpu_for(i, {0, 1}) for i in range(4)] == [0, 1, 0, 1]
    assert [affinity.cpu_for(i, {7, 2, 5}) for i in range(4)] == [2, 5, 7, 2]
    assert affinity.cpu_for(3, {4}) == 4
    with pytest.raises(ValueError, match="no CPU allowed"):
        affinity.cpu_for(0, set())


def test_a_child_is_pinned_to_its_cpu_and_the_parent_is_not() -> None:
    allowed = sorted(os.sched_getaffinity(0))
    index = 1
    code = (
        "import logging, os, sys; from saslauth import affinity; "
        "logging.basicConfig(stream=sys.stdout, format='%(message)s', level='INFO'); "
        f"cpu = affinity.pin_front({index}, 2); print(cpu, sorted(os.sched_getaffinity(0)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    expected = allowed[index % len(allowed)]
    line, result = done.stdout.splitlines()
    shared = " (more fronts than CPUs: some share one)" if len(allowed) < 2 else ""
    assert line == f"front 2 of 2 pinned to CPU {expected}{shared}"
    assert result == f"{expected} [{expected}]"
    assert sorted(os.sched_getaffinity(0)) == allowed  # only the child


def test_a_front_that_cannot_be_pinned_says_so_and_runs_on_any_cpu(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(pid: int, cpus: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setaffinity", refuse)
    with caplog.at_level(logging.INFO, "saslauth.front"):
        assert affinity.pin_front(0, 2) is None
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.WARNING,
            "pin_fronts: cannot pin front 1 of 2 to a CPU ([Errno 1] Operation not permitted); "
            "it runs on any",
        )
    ]


def test_more_fronts_than_cpus_share_and_say_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pinned: list[set[int]] = []
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cpus: pinned.append(cpus))
    with caplog.at_level(logging.INFO, "saslauth.front"):
        assert [affinity.pin_front(i, 3) for i in range(3)] == [0, 1, 0]
    assert pinned == [{0}, {1}, {0}]
    assert caplog.records[2].getMessage() == (
        "front 3 of 3 pinned to CPU 0 (more fronts than CPUs: some share one)"
    )
