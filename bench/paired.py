#!/usr/bin/env python3
"""Paired ratios of saslauth over Dovecot: each round's saslauth run over its Dovecot run.

bench/run.py runs Dovecot and then saslauth in every round, back to back, on a machine whose
speed drifts from minute to minute (on the 2-core CI machine Dovecot's own figure moves by a
third between runs).  A ratio of two medians lets that drift in: the medians may come from
different minutes.  The ratio within a round cancels the drift both of its runs share, and the
geometric mean of those ratios, with a bootstrap 95% interval, says whether a target is met
beyond the noise, or only within it.

Pools any number of results files (several invocations of bench/run.py with the same
settings), case by case:

    python3 bench/paired.py bench/results/*.json [--case plain]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

DRAWS = 4000  # bootstrap resamples: the interval's ends move by well under 0.01 beyond this
MIN_ROUNDS = 3  # fewer rounds give a ratio but no interval worth printing
# Settings of bench/run.py that do not change what a round measures: pooled runs may differ there.
NOT_MEASURED = frozenset({"cases", "rounds", "results_dir", "keep", "authbench", "authbench_src"})
# Settings added to bench/run.py later, with the value that files made before them ran with.
ADDED_LATER: dict[str, Any] = {"pin_fronts": "false"}
# Settings once stored as booleans (--pin-fronts was a flag before pin_fronts: auto existed).
WAS_BOOLEAN = frozenset({"pin_fronts"})


def round_ratios(runs: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    """saslauth's ``key`` over Dovecot's, round by round (runs as bench/run.py stores them)."""
    by_round: dict[int, dict[str, float]] = {}
    for run in runs:
        by_round.setdefault(int(run["round"]), {})[str(run["server"])] = float(run[key])
    return [
        pair["saslauth"] / pair["dovecot"]
        for _, pair in sorted(by_round.items())
        if pair.get("dovecot") and "saslauth" in pair
    ]


def geomean(values: Sequence[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


def interval(values: Sequence[float], draws: int = DRAWS, seed: int = 7) -> tuple[float, float]:
    """Bootstrap 95% interval of the geometric mean (percentile method, fixed seed)."""
    pick = random.Random(seed).choices  # noqa: S311 - a bootstrap, not a secret
    means = sorted(geomean(pick(values, k=len(values))) for _ in range(draws))
    return means[int(0.025 * draws)], means[int(0.975 * draws) - 1]


def describe(ratios: Sequence[float]) -> str:
    """``0.96x (95% CI 0.94-0.98, 60 rounds, 21 above 1)``, or less with few rounds."""
    if not ratios:
        return "n/a"
    text = f"{geomean(ratios):.2f}x"
    if len(ratios) < MIN_ROUNDS:
        return f"{text} ({len(ratios)} round{'s' if len(ratios) > 1 else ''})"
    low, high = interval(ratios)
    above = sum(r > 1 for r in ratios)
    return f"{text} (95% CI {low:.2f}-{high:.2f}, {len(ratios)} rounds, {above} above 1)"


def paired_line(runs: Sequence[Mapping[str, Any]]) -> str:
    """bench/run.py's words for one case: throughput and p99, paired by round."""
    return (
        f"throughput {describe(round_ratios(runs, 'auth_per_s'))}"
        f"  p99 {describe(round_ratios(runs, 'p99_us'))}"
    )


def _pooled(paths: Iterable[Path], case: str | None) -> dict[str, dict[str, list[float]]]:
    pooled: dict[str, dict[str, list[float]]] = {}
    settings_seen: dict[str, set[str]] = {}
    for path in paths:
        payload = json.loads(path.read_text())
        given = {**ADDED_LATER, **payload.get("settings", {})}
        for key in WAS_BOOLEAN & given.keys():
            if isinstance(given[key], bool):
                given[key] = "true" if given[key] else "false"
        measured = {k: v for k, v in given.items() if k not in NOT_MEASURED}
        settings = json.dumps(measured, sort_keys=True)
        for result in payload.get("cases", []):
            name = result["case"]
            if case is not None and name != case:
                continue
            into = pooled.setdefault(name, {"auth_per_s": [], "p99_us": []})
            for key, ratios in into.items():
                ratios.extend(round_ratios(result["runs"], key))
            settings_seen.setdefault(name, set()).add(settings)
    for name, seen in settings_seen.items():
        if len(seen) > 1:
            print(f"warning: case {name} pools runs made with {len(seen)} different settings")
    return pooled


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("results", nargs="+", type=Path, help="bench/run.py results files")
    p.add_argument("--case", help="only this case (plain, sha512, sha512-repeat, idle)")
    args = p.parse_args(argv)
    pooled = _pooled(args.results, args.case)
    if not pooled:
        print("no runs found", file=sys.stderr)
        return 1
    for name, ratios in pooled.items():
        print(f"{name}: throughput {describe(ratios['auth_per_s'])}")
        print(f"{'':{len(name)}}  p99        {describe(ratios['p99_us'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
