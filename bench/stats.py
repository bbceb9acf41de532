"""Medians, ranges and ratios of the runs of a scenario.

Runs vary by 10-20 % on this machine, so a figure is the median of its runs with their
range, and two systems are compared by the ratio of their medians. The range given for a
ratio comes from the runs paired by round: systems run interleaved (A B C A B C ...), so
run i of A and run i of B met the same machine weather, and each round gives one ratio.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def finite(values: Iterable[object]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v]


@dataclass(frozen=True)
class Spread:
    median: float
    min: float
    max: float
    n: int

    def as_dict(self) -> dict:
        return {"median": self.median, "min": self.min, "max": self.max, "n": self.n}


def spread(values: Iterable[object]) -> Spread | None:
    """Median and range of the finite numbers among values, or None if there are none."""
    xs = finite(values)
    if not xs:
        return None
    return Spread(statistics.median(xs), min(xs), max(xs), len(xs))


def paired_ratios(values: Sequence[object], baseline: Sequence[object]) -> list[float]:
    """values[i] / baseline[i] for every round where both are finite and the baseline > 0."""
    out = []
    for v, b in zip(values, baseline):
        if finite([v]) and finite([b]) and b > 0:
            out.append(float(v) / float(b))
    return out


@dataclass(frozen=True)
class Ratio:
    median_ratio: float  # ratio of the two medians
    min: float  # range of the per-round ratios (or of the medians' ratio when no pair)
    max: float
    pairs: int

    def as_dict(self) -> dict:
        return {"ratio": self.median_ratio, "min": self.min, "max": self.max, "pairs": self.pairs}


def ratio_of_medians(values: Sequence[object], baseline: Sequence[object]) -> Ratio | None:
    a, b = spread(values), spread(baseline)
    if a is None or b is None or b.median <= 0:
        return None
    r = a.median / b.median
    pairs = paired_ratios(values, baseline)
    if pairs:
        return Ratio(r, min(pairs), max(pairs), len(pairs))
    return Ratio(r, r, r, 0)
