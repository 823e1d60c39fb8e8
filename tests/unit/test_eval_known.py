"""known&incorrect's key facts: the direct question about the last edge of an item's shortest KG path,
built on real WordNet paths of real ARC-Easy rows and on the real MetaQA KB, scored by a real model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kale_ray.data.benchmarks import load_benchmark
from kale_ray.eval.known import fact_question, known_checks, load_facts, shares
from kale_ray.kg.facts import FactBuilder, key_edge
from kale_ray.kg.store import load_kg
from tests.known_support import kg_dir, search_paths


@pytest.fixture(scope="module")
def wordnet(data_root):
    return kg_dir("wordnet", data_root)


@pytest.fixture(scope="module")
def arc_paths(data_root, wordnet):
    rows = load_benchmark("arc-easy", data_root, "test").slice(0, 12).to_pylist()
    return rows, search_paths(rows, wordnet)


def _objects(kg, rel_key: str, role: str) -> dict[str, set[str]]:
    """label of an entity in `role` (head or tail) of the relation -> labels of its other ends."""
    rel = kg.relation_index[rel_key]
    heads, tails = np.asarray(kg.heads), np.asarray(kg.tails)
    edges = np.flatnonzero(np.asarray(kg.relations) == rel)
    out: dict[str, set[str]] = {}
    for e in edges:
        mine, other = (heads[e], tails[e]) if role == "head" else (tails[e], heads[e])
        out.setdefault(kg.labels[int(mine)], set()).add(kg.labels[int(other)])
    return out


def test_the_key_fact_is_the_shortest_paths_last_edge_with_same_relation_distractors(arc_paths, wordnet):
    rows, paths = arc_paths
    kg = load_kg(wordnet)
    builder = FactBuilder(kg, distractors=3, seed=0)
    facts = {r["id"]: builder.fact(r["id"], r["paths"]) for r in paths.to_pylist()}
    with_path = [r for r in paths.to_pylist() if r["path_status"] == "ok"]
    assert len(with_path) >= 3 and len(with_path) < len(rows)  # a real mix: some rows have no path
    for row in paths.to_pylist():
        fact = facts[row["id"]]
        if row["path_status"] != "ok":
            assert fact is None and key_edge(row["paths"]) is None
            continue
        shortest = min(json.loads(row["paths"]), key=len)
        start, rel, answer, backward = shortest[-1]
        assert answer in row["a_entities"]  # the walk ends at a linked answer entity
        assert (fact.head, fact.relation, fact.tail) == ((answer, rel, start) if backward else (start, rel, answer))
        assert fact.asks == ("head" if backward else "tail")
        assert fact.choices[fact.gold] == kg.labels[kg.id_of(answer)] and fact.given == kg.labels[kg.id_of(start)]
        assert len(fact.choices) == 4 and len({c.lower() for c in fact.choices}) == 4
        # each distractor sits in the answer's role of the same relation, and does not make the fact true
        role = _objects(kg, rel, fact.asks)
        others = [c for i, c in enumerate(fact.choices) if i != fact.gold]
        assert all(c in role for c in others)
        assert all(fact.given not in role[c] for c in others)
    # the stored triple exists in the KG, in its stored direction
    fact = next(f for f in facts.values() if f is not None)
    h, t = kg.id_of(fact.head), kg.id_of(fact.tail)
    rel = kg.relation_index[fact.relation]
    assert np.any((np.asarray(kg.heads) == h) & (np.asarray(kg.tails) == t) & (np.asarray(kg.relations) == rel))
    # the same item gets the same question every time; another item id draws other distractors
    again = FactBuilder(kg, distractors=3, seed=0)
    assert all(again.fact(r["id"], r["paths"]) == facts[r["id"]] for r in paths.to_pylist())


def test_a_backward_step_asks_for_the_triples_head(data_root):
    """Walking from James Cameron to The Abyss goes against `The Abyss directed_by James Cameron`: the
    question blanks the film, and the distractors are films not directed by him (the real MetaQA KB)."""
    kg = load_kg(kg_dir("metaqa", data_root))
    walk = json.dumps([[["James Cameron", "directed_by", "The Abyss", True]]])
    fact = FactBuilder(kg, distractors=3, seed=0).fact("item-1", walk)
    assert (fact.head, fact.relation, fact.tail, fact.asks) == ("The Abyss", "directed_by", "James Cameron", "head")
    assert fact_question(fact.as_dict()) == "Complete the fact: ___ directed by James Cameron."
    directors = _objects(kg, "directed_by", "head")
    others = [c for i, c in enumerate(fact.choices) if i != fact.gold]
    assert fact.choices[fact.gold] == "The Abyss" and len(others) == 3
    assert all(c in directors and "James Cameron" not in directors[c] for c in others)
    # a relation or entity the KG lacks, or no path at all: no fact
    assert FactBuilder(kg).fact("x", json.dumps([[["James Cameron", "no_such", "The Abyss", True]]])) is None
    assert FactBuilder(kg).fact("x", "[]") is None and FactBuilder(kg).fact("x", None) is None


def test_checks_score_the_question_with_the_real_model(arc_paths, wordnet, smollm2_path):
    from kale_ray.config import load_config
    from kale_ray.data.format import prompt_format
    from kale_ray.eval.metrics import mc_scores
    from kale_ray.eval.scorers import LocalScorer

    rows, paths = arc_paths
    facts = load_facts(paths, wordnet, distractors=3, seed=0)
    covered = [r for r in rows if r["id"] in facts]
    assert covered and len(covered) < len(rows)
    scorer = LocalScorer(str(smollm2_path))
    fmt = prompt_format(load_config(None, []))
    checks = known_checks(scorer, rows, facts, fmt)
    assert [c is not None for c in checks] == [r["id"] in facts for r in rows]
    for row, check in [(r, c) for r, c in zip(rows, checks, strict=True) if c is not None][:2]:
        fact = facts[row["id"]]
        assert check["question"] == fact_question(fact) and check["choices"] == fact["choices"]
        # the same log-likelihoods as scoring the question's pairs one item at a time
        alone = scorer.loglikelihood([(fmt.prompt(check["question"]), fmt.answer(c)) for c in fact["choices"]])
        assert check["lls"] == pytest.approx(alone, abs=1e-4)
        assert check["known"] == bool(mc_scores(alone, fact["choices"], fact["gold"])["acc_norm"])
    scorer.close()


def test_shares_count_coverage_and_the_reference_line():
    # 5 items: one without a fact; of the 4 covered, 3 known (2 of them answered wrongly), 1 unknown.
    known = [True, True, True, False, None]
    correct = [0.0, 0.0, 1.0, 1.0, 0.0]
    got = shares(known, correct)
    assert (got["items"], got["covered"], got["known"], got["known_incorrect_items"], got["incorrect_covered"]) == (
        5, 4, 3, 2, 2)
    assert got["coverage"] == pytest.approx(4 / 5) and got["known_share"] == pytest.approx(3 / 4)
    assert got["known_incorrect"] == pytest.approx(2 / 3)
    assert got["reference"] == pytest.approx(2 / 4)  # 1 - accuracy on the covered items, not on all
    empty = shares([None, None], [1.0, 0.0])
    assert (empty["covered"], empty["coverage"], empty["known_incorrect"], empty["reference"]) == (0, 0.0, None, None)
