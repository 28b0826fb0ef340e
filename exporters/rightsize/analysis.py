"""Statistics over a subject's 5-minute windows: percentiles, the latency knee, Little's law."""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass
from statistics import median

def at_percentile(ordered: list[float], q: float) -> float:
    """The q-th percentile (0-100) of sorted values, linear between closest ranks (NumPy's default)."""
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def present_sorted(values) -> list[float]:
    """The values without NaN (windows without a sample), sorted."""
    total = sum(values)
    return sorted(values) if total == total else sorted([v for v in values if v == v])


def percentile(values, q: float) -> float:
    """The q-th percentile of values; NaN (no sample) is left out."""
    return at_percentile(present_sorted(values), q)


def summary_of_sorted(ordered: list[float]) -> dict[str, float]:
    """p50/p95/p99/max of a sorted utilization series, as 0-1 ratios rounded to 4 places."""
    return {name: round(at_percentile(ordered, q), 4) for name, q in (("p50", 50), ("p95", 95), ("p99", 99),
                                                                      ("max", 100))}


def summary(values) -> dict[str, float]:
    return summary_of_sorted(present_sorted(values))


@dataclass
class Knee:
    """Sustainable requests/s per instance: where p99 latency starts to rise, from the history itself."""

    reached: bool
    sustainable_rate: float | None  # requests per second per instance
    baseline_latency: float | None  # seconds: median p99 latency at the lowest quarter of the load
    bin_width: float | None = None


def knee(per_instance_rate, latency, factor: float, bins: int = 20, min_points: int = 3) -> Knee:
    """Split the observed per-instance request rate into `bins` equal-width bins; the knee is the lowest bin
    above the lowest-load quarter of the windows whose median p99 latency exceeds `factor` x the baseline
    (that quarter's median latency). The sustainable rate is that bin's lower edge. Bins with fewer than `min_points` windows
    are ignored, so one outlier cannot make a knee. Both series are on the same step grid (NaN = none)."""
    pairs = [(x, y) for x, y in zip(per_instance_rate, latency) if x == x and y == y and x > 0]
    if len(pairs) < 4 * min_points:
        return Knee(False, None, None)
    pairs.sort()
    quarter = max(min_points, len(pairs) // 4)
    baseline = median(y for _, y in pairs[:quarter])
    xs = [x for x, _ in pairs]
    width = xs[-1] / bins
    low = 0
    for index in range(bins):  # the pairs are sorted by rate: each bin is a slice
        high = len(xs) if index == bins - 1 else bisect_left(xs, (index + 1) * width, low)
        # Only above the baseline's load: slow windows at the lowest load (cold starts) are no knee.
        if index * width >= xs[quarter - 1] and high - low >= min_points \
                and median(y for _, y in pairs[low:high]) > factor * baseline:
            return Knee(True, index * width, baseline, width)
        low = high
    return Knee(False, None, baseline, width)


def in_flight(rate: float, latency: float) -> float:
    """Little's law: requests in flight = arrival rate x time in the system."""
    return rate * latency
