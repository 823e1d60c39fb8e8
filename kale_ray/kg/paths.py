"""Multi-path A* with the anchor heuristic (METHOD.md, Stage 1, step 2) and the exhaustive BFS
reference with the same limits.

Both search the undirected view of the KG (an edge may be walked against its direction) over CSR
arrays (`store.Adjacency`), return node-distinct simple paths, at most `max_paths`, each at most
`max_hops` edges, shortest first, and count the paths they expanded.

A*: cost g = edges walked from the source, f = g + h with
    h(e) = max_i [dist(a_i, e_target) - dist(a_i, e)]+      (0 for any term with an unreached node)
over k anchors a_i sampled (seeded) from the m-hop neighbourhood of the target, each with a BFS of
depth d. By the triangle inequality on the undirected view, h never exceeds the true distance, so
the first goal popped is a shortest path and goals come out in order of length. The queue holds
(f, g, node, path) entries, several per node (no closed set), paths never repeat a node, and the
search stops after K paths or once the best f exceeds the hop limit.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np

from kale_ray.kg.store import Adjacency


@dataclass(frozen=True)
class SearchLimits:
    max_paths: int = 8          # K
    max_hops: int = 4           # hop limit
    anchors: int = 4            # k
    anchor_hops: int = 2        # m
    anchor_depth: int = 3       # d
    max_expansions: int = 200_000  # safety budget per pair; hitting it is reported as `truncated`
    seed: int = 0


@dataclass
class SearchResult:
    """Paths as lists of CSR positions (one per hop, walking order); map with `Adjacency.edge/back`."""

    steps: list[list[int]] = field(default_factory=list)
    nodes: list[list[int]] = field(default_factory=list)
    nodes_expanded: int = 0
    seconds: float = 0.0
    truncated: bool = False

    @property
    def lengths(self) -> list[int]:
        return [len(s) for s in self.steps]


class AnchorHeuristic:
    """h for one target: k seeded anchors around it and their depth-limited BFS distances."""

    def __init__(self, adj: Adjacency, target: int, limits: SearchLimits) -> None:
        self.anchors = sample_anchors(adj, target, limits.anchors, limits.anchor_hops,
                                      np.random.default_rng([limits.seed, target]))
        self.h = np.zeros(adj.num_nodes, dtype=np.int16)
        for anchor in self.anchors:
            dist = adj.bounded_bfs(int(anchor), limits.anchor_depth)
            to_target = int(dist[target])
            if to_target < 0:
                continue  # dist(a, target) is infinite: every term of this anchor counts as 0
            term = np.where(dist >= 0, to_target - dist, 0)
            np.maximum(self.h, term, out=self.h)

    def __call__(self, nodes: np.ndarray) -> np.ndarray:
        """h for each node: one table lookup (the table is built once per target)."""
        return self.h[nodes]


def sample_anchors(adj: Adjacency, target: int, k: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct nodes drawn uniformly from those 1..m hops from the target (fewer if there are fewer)."""
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    dist = adj.bounded_bfs(target, m)
    candidates = np.nonzero(dist > 0)[0]
    if len(candidates) <= k:
        return candidates
    return np.sort(rng.choice(candidates, size=k, replace=False))


def _trivial(source: int, target: int, adj: Adjacency, start: float) -> SearchResult | None:
    if not (0 <= source < adj.num_nodes and 0 <= target < adj.num_nodes):
        raise IndexError(f"node id out of range: {source} or {target} (graph has {adj.num_nodes} nodes)")
    if source == target:
        return SearchResult(steps=[[]], nodes=[[source]], seconds=time.perf_counter() - start)
    return None


def astar_paths(adj: Adjacency, source: int, target: int, limits: SearchLimits,
                heuristic: AnchorHeuristic | None = None) -> SearchResult:
    """Up to K shortest simple paths source -> target within the hop limit, by multi-path A*."""
    start = time.perf_counter()
    if (trivial := _trivial(source, target, adj, start)) is not None:
        return trivial
    h = heuristic if heuristic is not None else AnchorHeuristic(adj, target, limits)
    return _search(adj, source, target, limits, h, start)


def bfs_paths(adj: Adjacency, source: int, target: int, limits: SearchLimits) -> SearchResult:
    """The exhaustive reference: expands every simple path within the hop limit in breadth-first
    order (no heuristic, no early stop), then keeps the K shortest: what "full BFS" costs."""
    start = time.perf_counter()
    if (trivial := _trivial(source, target, adj, start)) is not None:
        return trivial
    result = SearchResult()
    queue: deque[tuple[tuple[int, ...], tuple[int, ...]]] = deque([((source,), ())])
    indptr, nbr = adj.indptr, adj.nbr
    while queue:
        nodes, steps = queue.popleft()
        u = nodes[-1]
        if u == target:
            if len(result.steps) < limits.max_paths:
                result.steps.append(list(steps))
                result.nodes.append(list(nodes))
            continue
        if len(steps) >= limits.max_hops:
            continue
        if result.nodes_expanded >= limits.max_expansions:
            result.truncated = True
            break
        result.nodes_expanded += 1
        last = len(steps) + 1 == limits.max_hops
        for pos in range(int(indptr[u]), int(indptr[u + 1])):
            v = int(nbr[pos])
            if (last and v != target) or v in nodes:
                continue
            queue.append((nodes + (v,), steps + (pos,)))
    result.seconds = time.perf_counter() - start
    return result


def _search(adj: Adjacency, source: int, target: int, limits: SearchLimits, h: AnchorHeuristic,
            start: float) -> SearchResult:
    result = SearchResult()
    indptr, nbr = adj.indptr, adj.nbr
    tie = itertools.count()
    h0 = int(h(np.array([source]))[0])
    # Entries: (f, -g, tiebreak, node, path nodes, path steps). Among equal f the deeper path goes first.
    heap: list[tuple[int, int, int, int, tuple[int, ...], tuple[int, ...]]] = [
        (h0, 0, next(tie), source, (source,), ())]
    while heap and len(result.steps) < limits.max_paths:
        f, neg_g, _, u, nodes, steps = heapq.heappop(heap)
        if f > limits.max_hops:
            break
        if u == target:
            result.steps.append(list(steps))
            result.nodes.append(list(nodes))
            continue
        g = -neg_g
        if g >= limits.max_hops:
            continue
        if result.nodes_expanded >= limits.max_expansions:
            result.truncated = True
            break
        result.nodes_expanded += 1
        lo, hi = int(indptr[u]), int(indptr[u + 1])
        children = nbr[lo:hi]
        if g + 1 == limits.max_hops:
            keep = np.nonzero(children == target)[0]
            f_child = np.full(len(keep), g + 1)
        else:
            f_all = g + 1 + h(children)
            keep = np.nonzero(f_all <= limits.max_hops)[0]
            f_child = f_all[keep]
        for i, fc in zip(keep.tolist(), f_child.tolist(), strict=True):
            v = int(children[i])
            if v in nodes:
                continue
            heapq.heappush(heap, (fc, -(g + 1), next(tie), v, nodes + (v,), steps + (lo + i,)))
    result.seconds = time.perf_counter() - start
    return result


class PathSearcher:
    """A* over one KG with the anchor heuristic cached per target (rows often share an answer)."""

    def __init__(self, adj: Adjacency, limits: SearchLimits, cache_size: int = 64) -> None:
        self.adj, self.limits, self.cache_size = adj, limits, cache_size
        self._cache: OrderedDict[int, AnchorHeuristic] = OrderedDict()

    def heuristic(self, target: int) -> AnchorHeuristic:
        h = self._cache.get(target)
        if h is None:
            h = AnchorHeuristic(self.adj, target, self.limits)
            self._cache[target] = h
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(target)
        return h

    def search(self, source: int, target: int, max_hops: int | None = None) -> SearchResult:
        limits = self.limits
        if max_hops is not None and max_hops != limits.max_hops:
            limits = SearchLimits(**{**limits.__dict__, "max_hops": max_hops})
        start = time.perf_counter()
        if (trivial := _trivial(source, target, self.adj, start)) is not None:
            return trivial
        return _search(self.adj, source, target, limits, self.heuristic(target), start)
