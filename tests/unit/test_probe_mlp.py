"""AUROC against hand-computed values and sklearn; the MLP probe learns separable data, not noise."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from kale_ray.probe.mlp import Probe, auroc, train_probe

CFG = SimpleNamespace(hidden=32, epochs=300, lr=1e-2, weight_decay=1e-2)


def test_auroc_perfect_inverse_ties_random() -> None:
    y = [False, False, True, True]
    assert auroc([0.1, 0.2, 0.8, 0.9], y) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], y) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], y) == 0.5
    assert auroc([0.1, 0.6, 0.4, 0.9], y) == 0.75
    assert np.isnan(auroc([0.1, 0.2], [True, True]))
    rng = np.random.default_rng(0)
    labels = rng.random(4000) < 0.3
    assert auroc(rng.random(4000), labels) == pytest.approx(0.5, abs=0.03)


def test_auroc_matches_sklearn_with_ties() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 5, 300).astype(float)
    labels = rng.random(300) < 0.4
    assert auroc(scores, labels) == pytest.approx(metrics.roc_auc_score(labels, scores), abs=1e-12)


def _blobs(seed: int, n: int = 400, d: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    x = rng.normal(size=(n, d)).astype(np.float32) * 5 + 100  # offset and scale: standardisation matters
    x[:, 3] += np.where(y, 12.0, -12.0)
    return x, y


def test_probe_learns_separable_and_not_shuffled(tmp_path) -> None:
    x, y = _blobs(0)
    xt, yt = _blobs(1)
    probe = train_probe(x, y, layer=3, cfg=CFG, seed=0)
    assert auroc(probe.predict(xt), yt) > 0.95
    shuffled = np.random.default_rng(2).permutation(y)
    noise = train_probe(x, shuffled, layer=3, cfg=CFG, seed=0)
    assert abs(auroc(noise.predict(xt), yt) - 0.5) < 0.15
    probe.save(tmp_path / "p.npz")
    again = Probe.load(tmp_path / "p.npz")
    assert again.layer == 3
    np.testing.assert_allclose(again.predict(xt), probe.predict(xt))
