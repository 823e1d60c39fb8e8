"""The hub cap (`paths.max_degree_through`): nodes over it are never inner nodes of a path, in the A*
with every heuristic, its BFS tables, the far-pair check and the BFS reference alike."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kale_ray.config import load_config
from kale_ray.kg import kernels
from kale_ray.kg.extract import RowPathFinder
from kale_ray.kg.paths import (
    HEURISTICS,
    Heuristic,
    PathSearcher,
    Scratch,
    SearchLimits,
    astar_paths,
    bfs_paths,
)
from kale_ray.kg.sources.base import kg_from_triples
from tests.unit.test_kg_paths import assert_fast_search_is_the_full_search, check_paths, near_pairs


def hub_kg():  # noqa: ANN201
    """a and b meet through the hub H (2 hops) and along a - x - y - z - b (4 hops); H has 20 leaves."""
    triples = [("a", "is", "H"), ("b", "is", "H"), ("a", "r", "x"), ("x", "r", "y"), ("y", "r", "z"),
               ("z", "r", "b")]
    triples += [(f"leaf{i}", "is", "H") for i in range(20)]
    return kg_from_triples(triples)


def hubby_kg(seed: int, n: int, m: int, hubs: int):  # noqa: ANN201
    """A random graph plus `hubs` nodes each joined to about half of all nodes."""
    rng = np.random.default_rng(seed)
    heads, tails = rng.integers(0, n, m), rng.integers(0, n, m)
    triples = [(f"n{h}", f"r{r}", f"n{t}") for h, r, t in zip(heads, rng.integers(0, 3, m), tails, strict=True)]
    triples += [(f"n{i}", "self", f"n{i}") for i in range(n)]  # every node exists
    for h in rng.choice(n, min(hubs, n), replace=False):
        triples += [(f"n{v}", "is", f"n{h}") for v in np.flatnonzero(rng.random(n) < 0.5)]
    return kg_from_triples(triples)


def restricted_distances(kg, source: int, cap: int | None) -> np.ndarray:  # noqa: ANN001
    """Hop distances from `source` where every inner node has at most `cap` distinct neighbours, by
    networkit's BFS on a directed copy of the undirected graph with the edges out of the nodes over the
    cap removed (the source's kept): such a node can be arrived at, never passed through."""
    import networkit as nk

    graph = kg.networkit_graph(undirected=True)
    n = graph.numberOfNodes()
    neighbours = [{v for v in graph.iterNeighbors(u) if v != u} for u in range(n)]
    degree = np.array([len(s) for s in neighbours])
    assert (degree == np.diff(kg.adjacency.indptr)).all(), "the cap counts distinct neighbours, as the CSR"
    directed = nk.Graph(n, directed=True)
    for u in range(n):
        if u == source or cap is None or degree[u] <= cap:
            for v in neighbours[u]:
                directed.addEdge(u, v)
    dist = np.array(nk.distance.BFS(directed, source).run().getDistances())
    dist[dist > 1e300] = np.inf
    return dist


def inner_degrees(kg, result) -> list[int]:  # noqa: ANN001
    degree = np.diff(kg.adjacency.indptr)
    return [int(degree[v]) for nodes in result.nodes for v in nodes[1:-1]]


@pytest.mark.parametrize("heuristic", HEURISTICS)
def test_paths_through_a_hub_only_without_the_cap(heuristic: str) -> None:
    kg = hub_kg()
    adj = kg.adjacency
    a, b, z, hub, leaf = (kg.id_of(k) for k in ("a", "b", "z", "H", "leaf0"))
    assert int(np.diff(adj.indptr)[hub]) == 22
    free = SearchLimits(max_hops=4, heuristic=heuristic)
    capped = SearchLimits(max_hops=4, heuristic=heuristic, max_degree_through=10)
    for limits in (free, capped):
        searcher = PathSearcher(adj, limits)
        runs = {"astar": lambda s, t, lim=limits: astar_paths(adj, s, t, lim),
                "bfs": lambda s, t, lim=limits: bfs_paths(adj, s, t, lim),
                "search": searcher.search,
                "search_many": lambda s, t, sr=searcher: sr.search_many([s], [t])[0]}
        for name, run in runs.items():
            through = run(a, b)
            keys = [[kg.keys[v] for v in nodes] for nodes in through.nodes]
            if limits is free:
                assert keys[0] == ["a", "H", "b"] and ["a", "x", "y", "z", "b"] in keys, name
                assert run(a, leaf).lengths == [2], name              # a - H - leaf0, the only way
            else:
                assert keys == [["a", "x", "y", "z", "b"]], name        # around the hub
                assert run(a, leaf).steps == [], name
            # The hub as an end: as the source and as the target, with or without the cap.
            assert run(hub, b).lengths[0] == 1 and run(b, hub).lengths[0] == 1, name
            assert run(hub, leaf).lengths == [1] and run(leaf, hub).lengths == [1], name
            assert [kg.keys[v] for v in run(hub, z).nodes[0]] == ["H", "b", "z"], name
            assert [kg.keys[v] for v in run(z, hub).nodes[0]] == ["z", "b", "H"], name
        assert (searcher.scratch.dist == -1).all()


@pytest.mark.parametrize("heuristic", HEURISTICS)
def test_a_hub_source_is_searched_though_the_anchor_bounds_fail_there(heuristic: str) -> None:
    """Hub s next to the target t and to the anchor a, whose other way to t is 4 hops: from a, t is
    unreached at depth 3 (>= 4 away) and s 1 away, so the landmark bound at s is 4 - 1 = 3 > dist(s, t) = 1
    (it routes through s, which the cap forbids). s is never pushed, only the root: it must not be cut."""
    triples = [("s", "r", "t"), ("a", "r", "s"), ("a", "r", "w1"), ("w1", "r", "w2"), ("w2", "r", "w3"),
               ("w3", "r", "t")] + [(f"leaf{i}", "is", "s") for i in range(10)]
    kg = kg_from_triples(triples)
    s, t = kg.id_of("s"), kg.id_of("t")
    limits = SearchLimits(max_hops=2, anchors=4, anchor_hops=4, anchor_depth=3, heuristic=heuristic,
                          max_degree_through=5)
    if heuristic == "landmark":
        h = Heuristic(kg.adjacency, t, limits)
        assert kg.id_of("a") in h.anchors.tolist() and h(np.array([s]))[0] == 3
    for found in (astar_paths(kg.adjacency, s, t, limits), PathSearcher(kg.adjacency, limits).search(s, t),
                  bfs_paths(kg.adjacency, s, t, limits)):
        assert [[kg.keys[v] for v in nodes] for nodes in found.nodes] == [["s", "t"]]


@pytest.mark.parametrize("heuristic", HEURISTICS)
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(3, 40), density=st.floats(0.3, 2.0), hubs=st.integers(0, 3),
       cap=st.integers(1, 8), max_hops=st.integers(1, 5), max_paths=st.integers(1, 6), anchors=st.integers(0, 5),
       anchor_hops=st.integers(1, 4), depth=st.integers(1, 4))
def test_capped_astar_matches_capped_bfs_and_restricted_distance(heuristic: str, seed: int, n: int, density: float,
                                                                 hubs: int, cap: int, max_hops: int, max_paths: int,
                                                                 anchors: int, anchor_hops: int, depth: int) -> None:
    kg = hubby_kg(seed, n, int(n * density), hubs)
    adj = kg.adjacency
    limits = SearchLimits(max_paths=max_paths, max_hops=max_hops, anchors=anchors, anchor_hops=anchor_hops,
                          anchor_depth=depth, seed=seed, heuristic=heuristic, max_degree_through=cap)
    degree = np.diff(adj.indptr)
    rng = np.random.default_rng(seed)
    over = np.flatnonzero(degree > cap)
    pairs = rng.integers(0, kg.num_entities, size=(6, 2)).tolist()
    if len(over):  # hubs as source and as target too
        pairs += [[int(over[0]), int(rng.integers(0, n))], [int(rng.integers(0, n)), int(over[-1])]]
    searcher = PathSearcher(adj, limits)
    for source, target in pairs:
        if source == target:
            continue
        a = astar_paths(adj, source, target, limits)
        b = bfs_paths(adj, source, target, limits)
        s = searcher.search(source, target)
        assert (s.steps, s.nodes_expanded) == (a.steps, a.nodes_expanded)
        assert (searcher.scratch.dist == -1).all()
        check_paths(kg, a, source, target, limits)
        check_paths(kg, b, source, target, limits)
        assert all(d <= cap for d in inner_degrees(kg, a) + inner_degrees(kg, b)), "no inner node over the cap"
        assert a.lengths == b.lengths
        assert not a.truncated and not b.truncated
        dist = restricted_distances(kg, source, cap)[target]
        if dist <= max_hops:
            assert a.lengths and a.lengths[0] == dist, "shortest returned path = restricted distance"
        else:
            assert a.steps == []


@pytest.mark.parametrize("heuristic", HEURISTICS)
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(3, 50), density=st.floats(0.3, 2.0), hubs=st.integers(0, 3),
       cap=st.integers(1, 8), anchors=st.integers(1, 8), hops=st.integers(1, 4), depth=st.integers(1, 4))
def test_capped_heuristics_bound_the_restricted_distance(heuristic: str, seed: int, n: int, density: float,
                                                         hubs: int, cap: int, anchors: int, hops: int,
                                                         depth: int) -> None:
    """h(e) <= restricted dist(e, target) wherever the search may push e (e within the cap, or the
    target); `target` is that distance itself, capped at d + 1, at every node."""
    kg = hubby_kg(seed, n, int(n * density), hubs)
    degree = np.diff(kg.adjacency.indptr)
    rng = np.random.default_rng(seed)
    over = np.flatnonzero(degree > cap)
    targets = [int(rng.integers(0, kg.num_entities))] + ([int(over[0])] if len(over) else [])
    for target in targets:
        limits = SearchLimits(max_hops=depth + 1, anchors=anchors, anchor_hops=hops, anchor_depth=depth, seed=seed,
                              heuristic=heuristic, max_degree_through=cap)
        built = Heuristic(kg.adjacency, target, limits)
        h = built(np.arange(kg.num_entities))
        dist = restricted_distances(kg, target, cap)
        pushable = (degree <= cap) | (np.arange(kg.num_entities) == target)
        assert (h >= 0).all() and h[target] == 0
        assert (h[pushable] <= dist[pushable]).all(), "admissible on the restricted graph"
        assert all(degree[x] <= cap for x in built.anchors), "anchors are never hubs"
        if heuristic == "target":
            assert (h == np.minimum(dist, depth + 1)).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(3, 50), density=st.floats(0.3, 2.0), hubs=st.integers(0, 3),
       cap=st.integers(1, 8), k=st.integers(0, 6))
def test_capped_within_hops_agrees_with_restricted_distances(seed: int, n: int, density: float, hubs: int, cap: int,
                                                              k: int) -> None:
    kg = hubby_kg(seed, n, int(n * density), hubs)
    adj, scratch = kg.adjacency, Scratch(kg.num_entities)
    for source in range(0, kg.num_entities, 3):
        dist = restricted_distances(kg, source, cap)
        for target in range(kg.num_entities):
            met = kernels.within_hops(adj.indptr, adj.nbr, source, target, k, scratch.dist, scratch.queue,
                                      scratch.other_dist, scratch.other_queue, cap)
            assert met == (dist[target] <= k), (source, target, k)
    assert (scratch.dist == -1).all() and (scratch.other_dist == -1).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(3, 40), density=st.floats(0.3, 2.0), hubs=st.integers(1, 3),
       cap=st.integers(1, 8), max_hops=st.integers(0, 5), depth=st.integers(1, 5),
       budget=st.sampled_from([0, 1, 2, 10_000]))
def test_capped_target_search_equals_the_full_search(seed: int, n: int, density: float, hubs: int, cap: int,
                                                     max_hops: int, depth: int, budget: int) -> None:
    """The far-pair check and the lazily filled last level of the h table, capped, give what the full
    A* over the full capped table returns: same paths, same counts (as test_kg_paths does uncapped)."""
    kg = hubby_kg(seed, n, int(n * density), hubs)
    adj = kg.adjacency
    limits = SearchLimits(max_hops=max_hops, anchor_depth=depth, max_expansions=budget, max_paths=4,
                          max_degree_through=cap)
    searcher = PathSearcher(adj, limits)
    assert_fast_search_is_the_full_search(kg, searcher)
    sources = np.repeat(np.arange(kg.num_entities), 2)
    targets = np.random.default_rng(seed).integers(0, kg.num_entities, len(sources))
    batch = searcher.search_many(sources, targets)
    for j, got in enumerate(batch):
        want = searcher.search(int(sources[j]), int(targets[j]))
        assert (got.steps, got.nodes, got.nodes_expanded, got.truncated) == (want.steps, want.nodes,
                                                                             want.nodes_expanded, want.truncated)


@pytest.mark.parametrize("source", ["metaqa", "wordnet"])
def test_no_cap_is_the_search_as_before_on_the_real_graphs(source: str, data_root) -> None:  # noqa: ANN001
    """Unset (the default) and a cap at the largest degree search exactly alike on the real graphs; a cap
    below MetaQA's genre and language nodes changes its paths (it bites, hence no default cap)."""
    import os
    import tempfile
    from pathlib import Path

    from kale_ray.config.kg import PathsConfig
    from kale_ray.kg.stage import build_kg
    from kale_ray.kg.store import load_kg

    assert PathsConfig().max_degree_through is None
    where = data_root / "metaqa" / "kb.txt" if source == "metaqa" else Path("/usr/share/wordnet")
    kg = load_kg(build_kg(source, where, Path(tempfile.gettempdir()) / f"kale-ray-tests-{os.getuid()}" / "kg-layout2" / source))
    adj = kg.adjacency
    top = int(np.diff(adj.indptr).max())
    sources, targets = near_pairs(adj, 120, seed=1)
    batches = {cap: PathSearcher(adj, SearchLimits(max_hops=3, max_paths=8, max_degree_through=cap))
               .search_many(sources, targets) for cap in (None, top, 1000)}
    for name in ("nodes", "steps", "offsets", "pair_offsets", "expanded", "truncated"):
        assert np.array_equal(getattr(batches[None], name), getattr(batches[top], name)), name
    if source == "metaqa":
        assert top > 1000 and not np.array_equal(batches[None].nodes, batches[1000].nodes)


def test_the_cap_reaches_the_search_from_the_config() -> None:
    kg = hub_kg()
    a, b = kg.id_of("a"), kg.id_of("b")
    for overrides, want in [([], [2, 4]), (["paths.max_degree_through=10"], [4])]:
        cfg = load_config(None, overrides)
        finder = RowPathFinder(kg, cfg.kg.model_dump(), cfg.paths.model_dump(), seed=0)
        assert finder.searcher.search(a, b).lengths == want
