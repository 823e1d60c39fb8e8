"""MetaQA: from the bracketed topic entity, multi-path A* reaches a gold answer within the question's hops.

The default suite checks a deterministic sample of each dev set; the `slow` test runs the full dev
sets (9,992 / 14,872 / 14,274 questions) and prints the rates recorded in bench/README.md.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import pytest

from kale_ray.data.benchmarks import load_benchmark
from kale_ray.kg.link import Linker
from kale_ray.kg.paths import PathSearcher, SearchLimits
from kale_ray.kg.stage import build_kg
from kale_ray.kg.store import load_kg

# The issue asks for 99% / 95% / 95%. The 1-hop ceiling is the shared kb.txt: rebuilt from an id-form copy,
# it holds 129,413 of the original 134,741 triples and names 42,797 of the original 43,234 entities (the
# file has exactly 42,797 distinct names: our build merges none; 333 of the missing ones are topics or
# answers of dev questions). Of the 9,991 1-hop dev questions, 40 topics and 10 answer sets are not in
# the KB and 158 lack the topic-answer edge (e.g. no `Three Brothers|starred_actors|Michele Placido`):
# 9,783 (97.92%) are answerable at all, and A* reaches all of them (bench/README.md, kg section).
TARGETS = {1: 0.97, 2: 0.95, 3: 0.95}


@pytest.fixture(scope="module")
def metaqa(data_root: Path):  # noqa: ANN201
    cache = Path(tempfile.gettempdir()) / f"kale-ray-tests-{os.getuid()}" / "kg-layout2" / "metaqa"
    kg = load_kg(build_kg("metaqa", data_root / "metaqa" / "kb.txt", cache))
    stored = {kg.triple_keys(i) for i in range(kg.num_triples)}
    return kg, Linker(kg), kg.networkit_graph(undirected=True), stored


def reach_rate(kg, linker: Linker, graph, stored: set, rows: list[dict], hops: int  # noqa: ANN001
               ) -> tuple[float, dict[str, int]]:
    """Share of questions for which A* reaches some gold answer from the topic within `hops`; also
    counts the questions the KB can answer at all (networkit BFS distance <= hops), the ceiling."""
    import networkit as nk

    from kale_ray.kg.verbalize import path_triples

    searcher = PathSearcher(kg.adjacency, SearchLimits(max_paths=1, max_hops=hops, seed=0))
    counts = {"questions": len(rows), "reached": 0, "answerable": 0, "topic_not_in_kb": 0,
              "answers_not_in_kb": 0}
    for row in rows:
        sources = linker.exact(row["topic"])
        targets = [t for t in (kg.id_of(a) for a in row["answers"]) if t is not None]
        if not sources:
            counts["topic_not_in_kb"] += 1
            continue
        if not targets:
            counts["answers_not_in_kb"] += 1
            continue
        bfs = nk.distance.BFS(graph, sources[0], storePaths=False).run()
        dist = {t: bfs.distance(t) for t in targets}  # not getDistances(): a Python list of every node
        counts["answerable"] += any(dist[t] <= hops for t in targets)
        for target in targets:
            result = searcher.search(sources[0], target)
            if result.steps:
                assert len(result.steps[0]) <= hops and dist[target] <= hops
                for a, rel, b, back in path_triples(kg, result)[0]:  # made of real KG triples
                    assert ((b, rel, a) if back else (a, rel, b)) in stored
                counts["reached"] += 1
                break
    return counts["reached"] / max(len(rows), 1), counts


def check(rate: float, counts: dict[str, int], hops: int) -> None:
    assert counts["reached"] == counts["answerable"], f"A* missed a path the KB has: {counts}"
    assert rate >= TARGETS[hops], counts


@pytest.mark.parametrize("hops", [1, 2, 3])
def test_metaqa_reach_on_a_deterministic_sample(metaqa, data_root: Path, hops: int) -> None:  # noqa: ANN001
    rows = load_benchmark(f"metaqa-{hops}hop", data_root).to_pylist()
    sample = random.Random(hops).sample(rows, 100)
    rate, counts = reach_rate(*metaqa, sample, hops)
    print(f"metaqa {hops}-hop sample: {rate:.2%} {counts}")
    check(rate, counts, hops)


@pytest.mark.slow
@pytest.mark.timeout(7200)
@pytest.mark.parametrize("hops", [1, 2, 3])
def test_metaqa_reach_on_the_full_dev_sets(metaqa, data_root: Path, hops: int) -> None:  # noqa: ANN001
    rows = load_benchmark(f"metaqa-{hops}hop", data_root).to_pylist()
    rate, counts = reach_rate(*metaqa, rows, hops)
    print(f"metaqa {hops}-hop full dev: {rate:.2%} {counts}", flush=True)
    check(rate, counts, hops)
