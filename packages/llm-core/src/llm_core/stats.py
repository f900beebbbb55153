"""Confidence intervals every evaluating package reports the same way (pass@1 tables, shares)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (well-behaved near 0 and 1);
    ``(0, 1)`` when there are no trials."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(per_item: Sequence[float], z: float = 1.96) -> tuple[float, float]:
    """95% normal interval of a mean over items (e.g. each problem's score averaged over its
    samples, in [0, 1]; the bounds are clipped to it), with the sample standard deviation
    (n - 1); ``(0, 1)`` below two items."""
    n = len(per_item)
    if n < 2:
        return 0.0, 1.0
    mean = sum(per_item) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in per_item) / (n - 1))
    return max(0.0, mean - z * sd / math.sqrt(n)), min(1.0, mean + z * sd / math.sqrt(n))
