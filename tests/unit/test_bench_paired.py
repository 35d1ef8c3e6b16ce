"""bench/paired.py: the per-round ratios bench/run.py reports next to its ratio of medians."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from bench.paired import describe, geomean, interval, main, round_ratios


def run(server: str, round_: int, rate: float, p99: float = 1000.0) -> dict[str, Any]:
    return {"server": server, "round": round_, "auth_per_s": rate, "p99_us": p99}


def test_ratios_pair_each_round_whatever_the_order() -> None:
    runs = [
        run("saslauth", 2, 90.0),
        run("dovecot", 1, 100.0),
        run("dovecot", 2, 60.0),
        run("saslauth", 1, 120.0),
        run("dovecot", 3, 50.0),  # no saslauth run in round 3 (stopped): no pair
    ]
    assert round_ratios(runs, "auth_per_s") == [1.2, 1.5]


def test_drift_shared_by_a_round_cancels_out() -> None:
    """The machine slows down over the runs: the medians of the two servers come from
    different minutes and disagree; every round says 0.9x."""
    speeds = [100.0, 80.0, 130.0, 60.0, 110.0]
    runs = [run("dovecot", i, s) for i, s in enumerate(speeds)]
    runs += [run("saslauth", i, 0.9 * s) for i, s in enumerate(speeds)]
    assert geomean(round_ratios(runs, "auth_per_s")) == pytest.approx(0.9)
    assert interval(round_ratios(runs, "auth_per_s")) == pytest.approx((0.9, 0.9))


def test_geomean_is_symmetric_for_ratios() -> None:
    assert geomean([2.0, 0.5]) == pytest.approx(1.0)
    assert geomean([4.0]) == pytest.approx(4.0)


def test_interval_holds_the_mean_and_is_repeatable() -> None:
    ratios = [0.8, 0.95, 1.1, 0.9, 1.02, 0.97, 0.85, 1.05]
    low, high = interval(ratios)
    assert low < geomean(ratios) < high
    assert min(ratios) <= low and high <= max(ratios)
    assert interval(ratios) == (low, high)  # fixed seed: the same text for the same runs


def test_describe() -> None:
    assert describe([]) == "n/a"
    assert describe([1.5]) == "1.50x (1 round)"
    assert describe([1.5, 0.5]) == f"{math.sqrt(0.75):.2f}x (2 rounds)"
    text = describe([0.9, 1.1, 1.0, 1.2])
    assert text.startswith("1.04x (95% CI ")  # (1.188 ** 0.25)
    assert text.endswith(", 4 rounds, 2 above 1)")


def results_file(path: Path, pairs: list[tuple[float, float]], **settings: Any) -> Path:
    runs = []
    for i, (dovecot, saslauth) in enumerate(pairs, 1):
        runs += [run("dovecot", i, dovecot, 2000.0), run("saslauth", i, saslauth, 1000.0)]
    case = {"case": "plain", "runs": runs}
    payload = {"settings": {"fronts": "auto", **settings}, "cases": [case]}
    path.write_text(json.dumps(payload))
    return path


def test_cli_pools_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = results_file(tmp_path / "a.json", [(100, 90), (100, 110)], rounds=2)
    b = results_file(tmp_path / "b.json", [(100, 100)], rounds=1)  # rounds: not a difference
    assert main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "warning" not in out
    assert "plain: throughput 0.10" not in out
    assert f"plain: throughput {geomean([0.9, 1.1, 1.0]):.2f}x (95% CI " in out
    assert ", 3 rounds, 1 above 1)" in out
    assert "p99        0.50x (95% CI 0.50-0.50, 3 rounds, 0 above 1)" in out


def test_cli_warns_when_pooling_different_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = results_file(tmp_path / "a.json", [(100, 90)])
    b = results_file(tmp_path / "b.json", [(100, 90)], fronts="1")
    assert main([str(a), str(b), "--case", "plain"]) == 0
    warning = "warning: case plain pools runs made with 2 different settings"
    assert warning in capsys.readouterr().out
    assert main([str(a), "--case", "idle"]) == 1


def test_cli_takes_a_setting_added_later_as_its_old_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Files made before bench/run.py had --pin-fronts ran unpinned, and files made before
    pin_fronts: auto stored a boolean: both pool with pin_fronts false without a warning, and
    with pin_fronts true or auto with one."""
    old = results_file(tmp_path / "old.json", [(100, 90)])
    boolean = results_file(tmp_path / "boolean.json", [(100, 90)], pin_fronts=False)
    unpinned = results_file(tmp_path / "new.json", [(100, 90)], pin_fronts="false")
    assert main([str(old), str(boolean), str(unpinned)]) == 0
    assert "warning" not in capsys.readouterr().out
    pinned = results_file(tmp_path / "pinned.json", [(100, 90)], pin_fronts=True)
    true = results_file(tmp_path / "true.json", [(100, 90)], pin_fronts="true")
    assert main([str(pinned), str(true)]) == 0
    assert "warning" not in capsys.readouterr().out
    for other in (pinned, results_file(tmp_path / "auto.json", [(100, 90)], pin_fronts="auto")):
        assert main([str(old), str(other)]) == 0
        assert "pools runs made with 2 different settings" in capsys.readouterr().out
