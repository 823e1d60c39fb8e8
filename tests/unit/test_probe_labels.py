"""Semantic entropy, answer grouping and seeded sampling of the probe's labels, on hand-made inputs."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from kale_ray.probe.labels import answer_group, label_rows, sample_options, semantic_entropy


def test_entropy_exact_values() -> None:
    assert semantic_entropy(["a"] * 10) == 0.0
    assert semantic_entropy(["a", "b"]) == pytest.approx(math.log(2))
    assert semantic_entropy(["a", "b", "c", "d"]) == pytest.approx(math.log(4))
    # 3/4, 1/4
    assert semantic_entropy(["x", "x", "x", "y"]) == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    with pytest.raises(ValueError):
        semantic_entropy([])


def test_generated_answers_group_by_normalised_text() -> None:
    texts = [" Paris.", "paris", "The answer is Paris\nmore", "  PARIS  ", "Lyon"]
    groups = [answer_group(t) for t in texts]
    assert groups[:4] == ["paris"] * 4
    assert groups[4] == "lyon"
    assert semantic_entropy(groups) == pytest.approx(-(0.8 * math.log(0.8) + 0.2 * math.log(0.2)))


def test_sampling_is_seeded_and_follows_the_distribution() -> None:
    lls = [-1.0, -2.0, -8.0, -3.0]
    a = sample_options(lls, 50, 1.0, seed=7)
    assert a == sample_options(lls, 50, 1.0, seed=7)
    assert a != sample_options(lls, 50, 1.0, seed=8)
    assert all(0 <= i < 4 for i in a)
    # a very peaked distribution (low T) always gives the argmax; a hot one spreads
    assert set(sample_options(lls, 50, 0.01, seed=1)) == {0}
    assert len(set(sample_options(lls, 200, 100.0, seed=1))) == 4


class _FakeEngine:
    """Fixed option log-likelihoods per question (the engine's scoring pass is tested elsewhere)."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table

    def loglikelihood(self, pairs: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        out, seen = [], {}
        for ctx, _ in pairs:
            q = next(k for k in self.table if k in ctx)
            k = seen.get(q, 0)
            seen[q] = k + 1
            out.append((self.table[q][k], False))
        return out


def test_label_rows_threshold_and_order_independence() -> None:
    cfg = SimpleNamespace(seed=0, probe=SimpleNamespace(seed=None, samples=20, temperature=1.0, threshold=0.3,
                                                         max_new_tokens=8))
    engine = _FakeEngine({"Q1": [0.0, -30.0, -30.0], "Q2": [0.0, 0.0, 0.0]})
    rows = [{"id": "r1", "question": "Q1", "choices": ["a", "b", "c"], "gold": 0},
            {"id": "r2", "question": "Q2", "choices": ["a", "b", "c"], "gold": 1}]
    table = label_rows(engine, rows, cfg).to_pylist()
    assert table[0]["entropy"] == 0.0 and table[0]["known"] is True and table[0]["n_groups"] == 1
    assert table[1]["entropy"] > 0.3 and table[1]["known"] is False
    reversed_table = label_rows(engine, rows[::-1], cfg).to_pylist()
    assert {r["id"]: r["answers"] for r in reversed_table} == {r["id"]: r["answers"] for r in table}
