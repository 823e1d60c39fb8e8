"""Multi-path A* with the anchor heuristic against the exhaustive BFS reference and networkit's BFS."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kale_ray.kg.paths import (
    HEURISTICS,
    Heuristic,
    PathSearcher,
    SearchLimits,
    astar_paths,
    bfs_paths,
    sample_anchors,
    target_depth,
)
from kale_ray.kg.sources.base import kg_from_triples
from kale_ray.kg.verbalize import path_triples, verbalize_path


def random_kg(seed: int, n: int, m: int, relations: int = 3):  # noqa: ANN201
    rng = np.random.default_rng(seed)
    heads, tails = rng.integers(0, n, m), rng.integers(0, n, m)
    rels = rng.integers(0, relations, m)
    # Keys name every node so isolated ones exist too.
    triples = [(f"n{h}", f"r{r}", f"n{t}") for h, r, t in zip(heads, rels, tails, strict=True)]
    triples += [(f"n{i}", "self", f"n{i}") for i in range(0, n, 7)]
    return kg_from_triples(triples)


def true_distances(kg, source: int) -> np.ndarray:  # noqa: ANN001
    """Hop distances on the undirected view by networkit's own BFS (an independent reference)."""
    import networkit as nk

    graph = kg.networkit_graph(undirected=True)
    dist = np.array(nk.distance.BFS(graph, source).run().getDistances())
    dist[dist > 1e300] = np.inf
    return dist


def check_paths(kg, result, source: int, target: int, limits: SearchLimits) -> None:  # noqa: ANN001
    stored = {kg.triple_keys(i) for i in range(kg.num_triples)}
    assert len(result.steps) <= limits.max_paths
    assert result.lengths == sorted(result.lengths)
    seen = set()
    for path, nodes in zip(path_triples(kg, result), result.nodes, strict=True):
        assert 1 <= len(path) <= limits.max_hops
        assert len(set(nodes)) == len(nodes), "paths are simple"
        assert tuple(nodes) not in seen
        seen.add(tuple(nodes))
        assert path[0][0] == kg.keys[source] and path[-1][2] == kg.keys[target]
        for (a, rel, b, backward), nxt in zip(path, path[1:] + [None], strict=True):
            assert ((b, rel, a) if backward else (a, rel, b)) in stored, "every step is a real KG triple"
            if nxt is not None:
                assert nxt[0] == b, "steps chain"


@pytest.mark.parametrize("heuristic", HEURISTICS)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 40), density=st.floats(0.5, 3.0),
       max_hops=st.integers(1, 5), max_paths=st.integers(1, 6), anchors=st.integers(0, 5),
       depth=st.integers(1, 4))
def test_astar_matches_exhaustive_bfs_and_true_distance(heuristic: str, seed: int, n: int, density: float,
                                                        max_hops: int, max_paths: int, anchors: int,
                                                        depth: int) -> None:
    kg = random_kg(seed, n, int(n * density))
    limits = SearchLimits(max_paths=max_paths, max_hops=max_hops, anchors=anchors, anchor_hops=2,
                          anchor_depth=depth, seed=seed, heuristic=heuristic)
    rng = np.random.default_rng(seed)
    searcher = PathSearcher(kg.adjacency, limits)  # reused buffers: no state may leak between queries
    for source, target in rng.integers(0, kg.num_entities, size=(4, 2)).tolist():
        if source == target:
            continue
        a = astar_paths(kg.adjacency, source, target, limits)
        b = bfs_paths(kg.adjacency, source, target, limits)
        s = searcher.search(source, target)
        assert (s.steps, s.nodes_expanded) == (a.steps, a.nodes_expanded)
        assert (searcher.scratch.dist == -1).all()
        check_paths(kg, a, source, target, limits)
        check_paths(kg, b, source, target, limits)
        assert a.lengths == b.lengths  # the K shortest, with the same lengths
        assert not a.truncated and not b.truncated
        dist = true_distances(kg, source)[target]
        if dist <= max_hops:
            assert a.lengths and a.lengths[0] == dist, "shortest returned path = BFS distance"
        else:
            assert a.steps == [], "no path within the hop limit"


@pytest.mark.parametrize("heuristic", HEURISTICS)
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 60), density=st.floats(0.3, 3.0),
       anchors=st.integers(1, 8), hops=st.integers(1, 5), depth=st.integers(1, 4))
def test_heuristic_never_exceeds_the_true_distance(heuristic: str, seed: int, n: int, density: float,
                                                   anchors: int, hops: int, depth: int) -> None:
    kg = random_kg(seed, n, int(n * density))
    target = int(np.random.default_rng(seed).integers(0, kg.num_entities))
    limits = SearchLimits(anchors=anchors, anchor_hops=hops, anchor_depth=depth, seed=seed, heuristic=heuristic)
    h = Heuristic(kg.adjacency, target, limits)(np.arange(kg.num_entities))
    dist = true_distances(kg, target)
    assert (h >= 0).all()
    assert (h <= dist).all(), "admissible: h(e) <= dist(e, target), unreached nodes included"
    assert h[target] == 0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 60), density=st.floats(0.3, 3.0),
       anchors=st.integers(1, 8), hops=st.integers(1, 5), depth=st.integers(1, 4))
def test_landmark_dominates_anchor_and_target_is_the_capped_true_distance(seed: int, n: int, density: float,
                                                                          anchors: int, hops: int,
                                                                          depth: int) -> None:
    kg = random_kg(seed, n, int(n * density))
    target = int(np.random.default_rng(seed).integers(0, kg.num_entities))
    nodes = np.arange(kg.num_entities)
    built = {name: Heuristic(kg.adjacency, target, SearchLimits(max_hops=depth + 1, anchors=anchors,
                                                                anchor_hops=hops, anchor_depth=depth, seed=seed,
                                                                heuristic=name))
             for name in HEURISTICS}
    h = {name: b(nodes) for name, b in built.items()}
    assert built["anchor"].anchors.tolist() == built["landmark"].anchors.tolist()
    assert (h["landmark"] >= h["anchor"]).all()
    assert (h["target"] == np.minimum(true_distances(kg, target), depth + 1)).all()
    assert (h["target"] >= h["landmark"]).all(), "no sampled anchor beats the target as landmark"


def test_unreached_nodes_get_the_depth_bound() -> None:
    """On a path 0-1-...-9 with anchor 1 next to target 0 and d = 2: nodes 4.. are unreached from the
    anchor, hence >= d + 1 - dist(1, 0) = 2 from the target; docs/method.md's bound gives them 0."""
    kg = kg_from_triples([(f"n{i}", "r", f"n{i + 1}") for i in range(9)])
    adj, target, anchor = kg.adjacency, kg.id_of("n0"), kg.id_of("n1")
    anchors = np.array([anchor])
    for name, expected in [("anchor", [0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
                           ("landmark", [0, 1, 0, 1, 2, 2, 2, 2, 2, 2])]:
        limits = SearchLimits(anchors=1, anchor_hops=1, anchor_depth=2, heuristic=name)  # max_hops 4
        h = Heuristic(adj, target, limits)
        assert h.anchors.tolist() == anchors.tolist()
        assert h([kg.id_of(f"n{i}") for i in range(10)]).tolist() == expected
    h = Heuristic(adj, target, SearchLimits(anchor_depth=2, heuristic="target"))
    assert h([kg.id_of(f"n{i}") for i in range(10)]).tolist() == [0, 1, 2, 3, 3, 3, 3, 3, 3, 3]


def test_stronger_bounds_expand_fewer_paths_with_the_same_lengths() -> None:
    kg = random_kg(11, 400, 1600)
    adj = kg.adjacency
    rng = np.random.default_rng(0)
    expanded = dict.fromkeys(HEURISTICS, 0)
    for source, target in rng.integers(0, kg.num_entities, size=(20, 2)).tolist():
        lengths = set()
        for name in HEURISTICS:
            r = astar_paths(adj, source, target, SearchLimits(max_hops=4, max_paths=4, heuristic=name))
            expanded[name] += r.nodes_expanded
            lengths.add(tuple(r.lengths))
        assert len(lengths) == 1
    assert expanded["target"] < expanded["landmark"] <= expanded["anchor"], expanded


def test_unknown_heuristic_is_a_clear_error() -> None:
    kg = random_kg(2, 20, 40)
    with pytest.raises(ValueError, match="unknown heuristic 'nope'"):
        astar_paths(kg.adjacency, 0, 1, SearchLimits(heuristic="nope"))


def test_anchors_are_seeded_and_come_from_the_m_hop_neighbourhood() -> None:
    kg = random_kg(3, 200, 500)
    adj = kg.adjacency
    target = int(np.argmax(adj.degree))
    a1 = sample_anchors(adj, target, 4, 2, np.random.default_rng([7, target]))
    a2 = sample_anchors(adj, target, 4, 2, np.random.default_rng([7, target]))
    a3 = sample_anchors(adj, target, 4, 2, np.random.default_rng([8, target]))
    assert a1.tolist() == a2.tolist() and len(a1) == 4 and len(set(a1.tolist())) == 4
    assert a1.tolist() != a3.tolist()
    dist = adj.bounded_bfs(target, 2)
    assert all(1 <= dist[a] <= 2 for a in a1)
    limits = SearchLimits(seed=7, heuristic="anchor")
    r1, r2 = (astar_paths(adj, 0, target, limits) for _ in range(2))
    assert r1.steps == r2.steps and r1.nodes_expanded == r2.nodes_expanded


def test_backward_walks_are_flagged_and_verbalised() -> None:
    kg = kg_from_triples([("Titanic", "directed_by", "James Cameron"), ("Titanic", "release_year", "1997")])
    limits = SearchLimits()
    src, dst = kg.id_of("James Cameron"), kg.id_of("1997")
    result = astar_paths(kg.adjacency, src, dst, limits)
    [path] = path_triples(kg, result)
    assert path == [["James Cameron", "directed_by", "Titanic", True], ["Titanic", "release_year", "1997", False]]
    assert verbalize_path(kg, path) == "Titanic directed by James Cameron; Titanic release year 1997."


def test_no_path_self_loop_and_unknown_entity() -> None:
    kg = kg_from_triples([("a", "r", "b"), ("b", "r", "b"), ("c", "r", "d"), ("a", "r", "a")])
    adj, limits = kg.adjacency, SearchLimits()
    a, b, c = kg.id_of("a"), kg.id_of("b"), kg.id_of("c")
    none = astar_paths(adj, a, c, limits)
    assert none.steps == [] and not none.truncated and bfs_paths(adj, a, c, limits).steps == []
    same = astar_paths(adj, b, b, limits)
    assert same.steps == [[]] and same.nodes == [[b]]           # source is target: one empty path
    only = astar_paths(adj, a, b, limits)
    assert only.lengths == [1]                                   # self-loops never enter a path
    assert kg.id_of("no such entity") is None
    with pytest.raises(IndexError):
        astar_paths(adj, a, kg.num_entities + 5, limits)


def test_expansion_budget_truncates_and_says_so() -> None:
    kg = random_kg(1, 300, 1500)
    limits = SearchLimits(max_hops=5, max_paths=50, max_expansions=10)
    result = astar_paths(kg.adjacency, 0, 1, limits)
    assert result.truncated and result.nodes_expanded == 10


def test_searcher_caches_the_heuristic_per_target_and_honours_a_hop_override() -> None:
    kg = random_kg(5, 100, 300)
    searcher = PathSearcher(kg.adjacency, SearchLimits(max_hops=4, heuristic="landmark"), cache_size=2)
    r = searcher.search(0, 1, max_hops=2)
    assert all(length <= 2 for length in r.lengths)
    assert searcher.heuristic(1) is searcher.heuristic(1)
    searcher.heuristic(2), searcher.heuristic(3)
    assert 1 not in searcher._cache


def test_target_heuristic_depth_is_capped_below_the_hop_limit() -> None:
    """The target BFS stops at max_hops - 1 and still prunes exactly: same paths, same expansions."""
    kg = random_kg(8, 300, 900)
    adj = kg.adjacency
    for max_hops in (1, 2, 3):
        capped = SearchLimits(max_hops=max_hops, anchor_depth=3)
        assert target_depth(capped) == max_hops - 1
        full_table = Heuristic(adj, 5, SearchLimits(max_hops=9, anchor_depth=3))
        for source in range(0, 300, 7):
            if source == 5:
                continue
            a = astar_paths(adj, source, 5, capped)
            b = astar_paths(adj, source, 5, capped, heuristic=full_table)
            assert a.steps == b.steps
            assert a.nodes_expanded - b.nodes_expanded in (0, 1)


def assert_batch_equals_per_pair(searcher: PathSearcher, sources: np.ndarray, targets: np.ndarray,
                                 hops: np.ndarray | None = None) -> int:
    """search_many == one `search` per pair: same paths (nodes and CSR steps), counts and flags."""
    batch = searcher.search_many(sources, targets, hops)
    assert len(batch) == len(sources)
    with_paths = 0
    for j, got in enumerate(batch):
        want = searcher.search(int(sources[j]), int(targets[j]), None if hops is None else int(hops[j]))
        assert (got.steps, got.nodes) == (want.steps, want.nodes), f"pair {j}"
        assert (got.nodes_expanded, got.truncated) == (want.nodes_expanded, want.truncated), f"pair {j}"
        with_paths += bool(want.steps) and sources[j] != targets[j]
    return with_paths


def near_pairs(adj, n: int, seed: int, hops: int = 3) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Half random pairs (mostly no path), half with the target 1..hops away (paths exist)."""
    rng = np.random.default_rng(seed)
    sources = rng.integers(0, adj.num_nodes, n)
    targets = rng.integers(0, adj.num_nodes, n)
    for j in range(0, n, 2):
        near = np.nonzero(adj.bounded_bfs(int(sources[j]), hops) > 0)[0]
        if len(near):
            targets[j] = rng.choice(near)
    return sources, targets


@pytest.mark.parametrize("heuristic", HEURISTICS)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 40), density=st.floats(0.5, 3.0),
       max_paths=st.integers(0, 6), depth=st.integers(1, 4), budget=st.sampled_from([3, 50, 10_000]))
def test_search_many_equals_search_per_pair(heuristic: str, seed: int, n: int, density: float, max_paths: int,
                                            depth: int, budget: int) -> None:
    kg = random_kg(seed, n, int(n * density))
    rng = np.random.default_rng(seed)
    pairs = 30
    sources, targets = rng.integers(0, kg.num_entities, pairs), rng.integers(0, kg.num_entities, pairs)
    targets[::5] = sources[::5]                                    # source == target: one empty path
    hops = rng.integers(0, 6, pairs)                               # per-pair hop limits, 0 included
    limits = SearchLimits(max_paths=max_paths, anchor_depth=depth, max_expansions=budget, heuristic=heuristic)
    searcher = PathSearcher(kg.adjacency, limits)
    assert_batch_equals_per_pair(searcher, sources, targets, hops)
    assert_batch_equals_per_pair(searcher, sources, targets)


@pytest.mark.parametrize("source", ["metaqa", "wordnet"])
def test_search_many_equals_search_on_the_real_graphs(source: str, data_root) -> None:  # noqa: ANN001
    """The real MetaQA KB and WordNet (cached builds shared with the other kg tests)."""
    import os
    import tempfile
    from pathlib import Path

    from kale_ray.kg.stage import build_kg
    from kale_ray.kg.store import load_kg

    where = data_root / "metaqa" / "kb.txt" if source == "metaqa" else Path("/usr/share/wordnet")
    kg = load_kg(build_kg(source, where, Path(tempfile.gettempdir()) / f"kale-ray-tests-{os.getuid()}" / "kg-layout2" / source))
    limits = SearchLimits(max_hops=3, max_paths=8)
    searcher = PathSearcher(kg.adjacency, limits)
    sources, targets = near_pairs(kg.adjacency, 120, seed=1)
    assert assert_batch_equals_per_pair(searcher, sources, targets) >= 50  # most near pairs have paths
    for source, target, got in zip(sources, targets, searcher.search_many(sources, targets), strict=True):
        if source != target:  # and both equal the plain search over the full h table (no short cuts)
            full = astar_paths(kg.adjacency, int(source), int(target), limits, Heuristic(kg.adjacency, target, limits))
            assert (got.steps, got.nodes_expanded, got.truncated) == (full.steps, full.nodes_expanded, full.truncated)


def test_search_many_checks_its_input() -> None:
    kg = random_kg(2, 50, 120)
    searcher = PathSearcher(kg.adjacency, SearchLimits())
    with pytest.raises(IndexError, match="pair 1"):
        searcher.search_many([0, 3, 4], [1, kg.num_entities, -1])
    with pytest.raises(IndexError, match="pair 0"):
        searcher.search_many([-2], [1])
    with pytest.raises(ValueError, match="2 sources, 1 targets"):
        searcher.search_many([0, 1], [2])
    empty = searcher.search_many([], [])
    assert len(empty) == 0 and list(empty) == []
    batch = searcher.search_many([4, 5], [4, 9])
    assert batch[0].steps == [[]] and batch[0].nodes == [[4]] and batch[0].nodes_expanded == 0
    assert batch[-1].steps == batch[1].steps and len(batch[0:2]) == 2
    with pytest.raises(IndexError):
        batch[2]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 60), density=st.floats(0.5, 2.5), k=st.integers(0, 6))
def test_within_hops_agrees_with_networkit_distances(seed: int, n: int, density: float, k: int) -> None:
    from kale_ray.kg import kernels
    from kale_ray.kg.paths import Scratch

    kg = random_kg(seed, n, int(n * density))
    adj, scratch = kg.adjacency, Scratch(kg.num_entities)
    for source in range(0, kg.num_entities, 3):
        dist = true_distances(kg, source)
        for target in range(kg.num_entities):
            met = kernels.within_hops(adj.indptr, adj.nbr, source, target, k, scratch.dist, scratch.queue,
                                      scratch.other_dist, scratch.other_queue)
            assert met == (dist[target] <= k), (source, target, k)
    assert (scratch.dist == -1).all() and (scratch.other_dist == -1).all()  # buffers handed back clean


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 40), density=st.floats(0.5, 3.0), max_hops=st.integers(0, 5),
       depth=st.integers(1, 5), budget=st.sampled_from([0, 1, 2, 10_000]))
def test_target_search_skips_far_pairs_with_the_full_searchs_result(seed: int, n: int, density: float,
                                                                    max_hops: int, depth: int, budget: int) -> None:
    """The `within_hops` short cut for pairs beyond the hop limit and the lazily filled last level of the
    h table give what the full A* over the full table (`astar_paths` with an explicit Heuristic, which
    takes neither) returns: same paths, same counts."""
    kg = random_kg(seed, n, int(n * density))
    limits = SearchLimits(max_hops=max_hops, anchor_depth=depth, max_expansions=budget, max_paths=4)
    assert_fast_search_is_the_full_search(kg, PathSearcher(kg.adjacency, limits))


def assert_fast_search_is_the_full_search(kg, searcher: PathSearcher) -> None:  # noqa: ANN001
    """Every pair (targets of even id) searched by `searcher` equals A* over the explicit full table."""
    adj, limits = searcher.adj, searcher.limits
    for target in range(0, kg.num_entities, 2):
        table = Heuristic(adj, target, limits)
        for source in range(kg.num_entities):
            if source == target:
                continue
            fast, full = searcher.search(source, target), astar_paths(adj, source, target, limits, heuristic=table)
            assert (fast.steps, fast.nodes_expanded, fast.truncated) == (full.steps, full.nodes_expanded,
                                                                           full.truncated)
