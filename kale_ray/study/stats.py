"""Paired statistics for the study page: every arm is scored on the same held-out items, so arms are
compared item by item (exact McNemar, a paired bootstrap over items stratified by benchmark), the named
primary contrasts are Holm-corrected, and the design's minimal detectable difference is stated.

Pure Python and numpy (no scipy at run time); tests check the numbers against scipy and hand cases.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts: b items right only under A, c only
    under B; under H0 each discordant item is a fair coin (binomial(b + c, 1/2))."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0 (got {b}, {c})")
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def sign_test(diffs: Sequence[float]) -> tuple[int, int, float]:
    """(items A ahead, items B ahead, exact p) from per-item differences A - B. With 0/1 correctness of
    one run per arm this is McNemar's exact test; with correctness averaged over seeds it is the same
    test on each item's mean, the item staying the unit of replication."""
    b = sum(1 for d in diffs if d > 0)
    c = sum(1 for d in diffs if d < 0)
    return b, c, mcnemar_exact(b, c)


@dataclass(frozen=True)
class Interval:
    diff: float
    low: float
    high: float


def paired_bootstrap(a: Sequence[float], b: Sequence[float], strata: Sequence[str], *, n_boot: int = 2000,
                     seed: int = 0, level: float = 0.95) -> Interval:
    """Percentile interval of mean(a) - mean(b) over items, pooled (each item weighs the same), with items
    resampled with replacement within each stratum (benchmark), so every replicate keeps the design's
    items per benchmark; a and b stay paired (an item is drawn with both its scores)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.shape[0] != len(strata) or x.size == 0:
        raise ValueError("paired_bootstrap needs a, b and strata of the same non-zero length")
    d = x - y
    rng = np.random.default_rng(seed)
    totals = np.zeros(n_boot)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(strata):
        groups.setdefault(s, []).append(i)
    for key in sorted(groups):
        idx = np.asarray(groups[key])
        draws = rng.integers(0, idx.size, size=(n_boot, idx.size))
        totals += d[idx][draws].sum(axis=1)
    means = totals / d.size
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return Interval(float(d.mean()), float(low), float(high))


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone), one per named contrast."""
    order = sorted(pvalues, key=lambda k: pvalues[k])
    m = len(order)
    adjusted: dict[str, float] = {}
    running = 0.0
    for rank, name in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[name]))
        adjusted[name] = running
    return adjusted


def mcnemar_n(delta: float, discordance: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Items a paired design needs to detect a difference `delta` of accuracy at this two-sided alpha and
    power, given the share of discordant items (Connor 1987's normal approximation to McNemar)."""
    if not 0 < delta <= discordance <= 1:
        raise ValueError(f"need 0 < delta <= discordance <= 1 (got {delta}, {discordance})")
    z_a, z_b = NormalDist().inv_cdf(1 - alpha / 2), NormalDist().inv_cdf(power)
    return (z_a * math.sqrt(discordance) + z_b * math.sqrt(discordance - delta**2)) ** 2 / delta**2


def detectable_difference(n: int, discordance: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest accuracy difference (a share, not points) that n paired items detect at this power,
    given the discordance rate: `mcnemar_n` solved for delta by bisection."""
    if n < 1 or not 0 < discordance <= 1:
        raise ValueError(f"need n >= 1 and 0 < discordance <= 1 (got {n}, {discordance})")
    if mcnemar_n(discordance, discordance, alpha, power) > n:
        return discordance  # even a difference as large as every discordant item is not detectable
    lo, hi = 1e-9, discordance
    for _ in range(100):
        mid = (lo + hi) / 2
        if mcnemar_n(mid, discordance, alpha, power) > n:
            lo = mid
        else:
            hi = mid
    return hi
