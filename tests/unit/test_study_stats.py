"""The study's paired statistics against known values: scipy where it has the same test, hand cases
otherwise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kale_ray.study.stats import (
    detectable_difference,
    holm,
    mcnemar_exact,
    mcnemar_n,
    paired_bootstrap,
    sign_test,
)


def test_exact_mcnemar_matches_hand_values_and_scipy():
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024)  # 2 * (C(10,0) + C(10,1)) / 2**10
    assert mcnemar_exact(5, 5) == 1.0 and mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    scipy_stats = pytest.importorskip("scipy.stats")
    for b, c in [(3, 12), (20, 31), (40, 25), (0, 1), (17, 17), (101, 77)]:
        expected = scipy_stats.binomtest(b, b + c, 0.5).pvalue
        assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9), (b, c)
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_sign_test_on_correctness_is_mcnemar():
    a = [1, 1, 0, 1, 0, 1, 1, 1]
    b = [0, 1, 0, 0, 1, 0, 1, 0]
    assert sign_test([x - y for x, y in zip(a, b, strict=True)]) == (4, 1, mcnemar_exact(4, 1))
    assert sign_test([0.5, -1 / 3, 0.0, 1.0])[:2] == (2, 1)  # seed-averaged items


def test_paired_bootstrap_covers_a_known_difference_and_is_seeded():
    rng = np.random.default_rng(3)
    n = 600
    b = (rng.random(n) < 0.5).astype(float)
    a = b.copy()
    flip = rng.choice(np.flatnonzero(b == 0), size=60, replace=False)  # A right on 60 more items: +0.10
    a[flip] = 1.0
    strata = ["arc"] * 300 + ["mmlu"] * 300
    ci = paired_bootstrap(a, b, strata, n_boot=2000, seed=0)
    assert ci.diff == pytest.approx(0.10)
    assert ci.low < 0.10 < ci.high and ci.low > 0.06 and ci.high < 0.14
    # Binomial sd of the discordant share: sqrt(0.1 * 0.9 / 600) = 0.0122; the 95% width is about 4 sd.
    assert ci.high - ci.low == pytest.approx(2 * 1.96 * math.sqrt(0.1 * 0.9 / n), rel=0.15)
    assert paired_bootstrap(a, b, strata, n_boot=2000, seed=0) == ci
    means_a, means_b = rng.random(n), rng.random(n)  # seed-averaged items: no ties between replicates
    seeded = paired_bootstrap(means_a, means_b, strata, n_boot=500, seed=0)
    assert paired_bootstrap(means_a, means_b, strata, n_boot=500, seed=0) == seeded
    assert paired_bootstrap(means_a, means_b, strata, n_boot=500, seed=1) != seeded
    same = paired_bootstrap(b, b, strata, n_boot=500, seed=0)
    assert (same.diff, same.low, same.high) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        paired_bootstrap(a, b[:-1], strata)


def test_bootstrap_resamples_within_strata():
    """All of A's gain sits in one benchmark and none of the variance in the other: stratified, the
    replicates keep 100 items of each, so the interval is that of 10 gains among 100 items, halved."""
    a = [1.0] * 10 + [0.0] * 90 + [1.0] * 100
    b = [0.0] * 100 + [1.0] * 100
    ci = paired_bootstrap(a, b, ["x"] * 100 + ["y"] * 100, n_boot=4000, seed=0)
    sd = math.sqrt(0.1 * 0.9 / 100) / 2
    assert ci.diff == pytest.approx(0.05) and ci.high - ci.low == pytest.approx(2 * 1.96 * sd, rel=0.15)


def test_holm_adjusts_step_down():
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.5})
    assert adjusted == pytest.approx({"a": 0.04, "c": 0.09, "b": 0.09, "d": 0.5})
    assert holm({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}
    assert holm({}) == {}


def test_detectable_difference_of_a_paired_design():
    # Connor (1987): discordance 0.2, difference 0.05 at alpha 0.05 and 80% power needs 626 items.
    assert mcnemar_n(0.05, 0.2) == pytest.approx(625.6, abs=0.5)
    assert detectable_difference(626, 0.2) == pytest.approx(0.05, abs=5e-4)
    # The reading of the old design: 240 items, a quarter discordant -> about 9 points.
    assert 0.085 < detectable_difference(240, 0.25) < 0.095
    # More items or fewer discordant items -> a smaller detectable difference.
    assert detectable_difference(1649, 0.25) < detectable_difference(240, 0.25)
    assert detectable_difference(1649, 0.15) < detectable_difference(1649, 0.25)
    assert detectable_difference(3, 0.1) == 0.1
