"""Multi-path A* with anchor / landmark heuristics (docs/method.md, Stage 1, step 2) and the exhaustive BFS
reference with the same limits.

Both search the undirected view of the KG (an edge may be walked against its direction) over CSR
arrays (`store.Adjacency`), return node-distinct simple paths, at most `max_paths`, each at most
`max_hops` edges, shortest first, and count the paths they expanded.

A*: cost g = edges walked from the source, f = g + h, with one of three admissible lower bounds h
on the undirected hop distance to the target (`SearchLimits.heuristic`, proofs in `build_heuristic`):
    anchor    docs/method.md exactly: h(e) = max_i [dist(a_i, e_target) - dist(a_i, e)]+ over k anchors a_i
              sampled (seeded) from the m-hop neighbourhood of the target, each with a BFS of depth d,
              0 for any term with an unreached node. At most m, so it prunes little (bench/README.md).
    landmark  the full two-sided landmark (ALT) bound over the same anchors, using that a node a depth-d
              BFS did not reach is at least d + 1 away.
    target    the landmark bound with the target as its own landmark: exact within d hops of the
              target, d + 1 beyond. One BFS per target; the default (fewest expansions, measured).
Since h never exceeds the true distance, the first goal popped is a shortest path and goals come out
in order of length. The queue holds (f, g, node, path) entries, several per node (no closed set),
paths never repeat a node, and the search stops after K paths or once the best f exceeds the hop
limit. The A* loop is compiled with numba (`kernels.py`); the BFS reference stays plain Python,
written apart from it on purpose.

Hubs (`SearchLimits.max_degree_through`): a node with more distinct neighbours than that is never an
inner node of a path; it may still be the source or the target. Both searches, every heuristic and
its BFS then work on that restricted graph (distances there are what the bounds bound), so a pair
never pays for a hub's neighbourhood it merely passes by. On Wikidata-like graphs a hub's degree
grows with the graph (Q5 "human" has ~10M in-edges), and a path through it ("X is a human; Y is a
human") says nothing about how X and Y relate.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import overload

import numpy as np

from kale_ray.kg import kernels
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
    heuristic: str = "target"   # anchor | landmark | target (see the module docstring)
    max_degree_through: int | None = None  # inner nodes of a path have at most this degree; None = any

    @property
    def cap(self) -> int:
        """`max_degree_through` as the kernels take it: -1 for no limit."""
        return -1 if self.max_degree_through is None else int(self.max_degree_through)


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


HEURISTICS = ("anchor", "landmark", "target")


@dataclass(eq=False)
class SearchBatch(Sequence[SearchResult]):
    """The results of `PathSearcher.search_many` as flat arrays, one SearchResult built per item on
    access (so a caller that needs counts only never builds lists). Pair j's paths are
    pair_offsets[j] : pair_offsets[j + 1]; path i is nodes[offsets[i] + i : offsets[i + 1] + i + 1]
    over CSR positions steps[offsets[i] : offsets[i + 1]]. `seconds` is per pair: the batched call's
    time shared equally among its pairs (one call has no per-pair clock)."""

    nodes: np.ndarray
    steps: np.ndarray
    offsets: np.ndarray
    pair_offsets: np.ndarray
    expanded: np.ndarray
    truncated: np.ndarray
    seconds: np.ndarray

    @classmethod
    def from_results(cls, results: list[SearchResult]) -> SearchBatch:
        paths = [(s, n) for r in results for s, n in zip(r.steps, r.nodes, strict=True)]
        lengths = [len(s) for s, _ in paths]
        return cls(nodes=np.array([v for _, n in paths for v in n], np.int64),
                   steps=np.array([v for s, _ in paths for v in s], np.int64),
                   offsets=np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64),
                   pair_offsets=np.concatenate([[0], np.cumsum([len(r.steps) for r in results])]).astype(np.int64),
                   expanded=np.array([r.nodes_expanded for r in results], np.int64),
                   truncated=np.array([r.truncated for r in results], np.bool_),
                   seconds=np.array([r.seconds for r in results], np.float64))

    def __len__(self) -> int:
        return len(self.expanded)

    @overload
    def __getitem__(self, j: int) -> SearchResult: ...

    @overload
    def __getitem__(self, j: slice) -> list[SearchResult]: ...

    def __getitem__(self, j: int | slice) -> SearchResult | list[SearchResult]:
        if isinstance(j, slice):
            return [self[i] for i in range(*j.indices(len(self)))]
        if not -len(self) <= j < len(self):
            raise IndexError(f"pair {j} out of range ({len(self)} pairs)")
        j = j % len(self)
        first, last = int(self.pair_offsets[j]), int(self.pair_offsets[j + 1])
        offsets = self.offsets[first: last + 1].tolist()
        result = SearchResult(nodes_expanded=int(self.expanded[j]), truncated=bool(self.truncated[j]),
                              seconds=float(self.seconds[j]))
        for i, (lo, hi) in enumerate(pairwise(offsets), start=first):
            result.steps.append(self.steps[lo:hi].tolist())
            result.nodes.append(self.nodes[lo + i: hi + i + 1].tolist())
        return result


class Scratch:
    """BFS buffers sized to the graph, reused across searches: every kernel leaves `dist` all -1 again
    (resetting only what it wrote), so a query costs what its BFS reaches, not fresh O(nodes) arrays."""

    def __init__(self, num_nodes: int) -> None:
        self.dist = np.full(num_nodes, -1, np.int16)
        self.queue = np.empty(num_nodes, np.int64)
        self.other_dist = np.full(num_nodes, -1, np.int16)  # the second side of `kernels.within_hops`
        self.other_queue = np.empty(num_nodes, np.int64)


class Heuristic:
    """h for one target as a table: h[node], where an entry < 0 stands for `beyond` (so a BFS distance
    table serves as it is). `anchors` are the sampled anchors (none for the `target` heuristic)."""

    def __init__(self, adj: Adjacency, target: int, limits: SearchLimits, scratch: Scratch | None = None) -> None:
        self.anchors, self.table, self.beyond = build_heuristic(adj, target, limits,
                                                                scratch or Scratch(adj.num_nodes))

    def __call__(self, nodes: np.ndarray) -> np.ndarray:
        values = self.table[nodes]
        return np.where(values < 0, self.beyond, values)


def target_depth(limits: SearchLimits) -> int:
    """BFS depth of the `target` heuristic: d, but never more than max_hops - 1. A* pushes a node v at
    depth g >= 1 only if g + h(v) <= max_hops, which needs h(v) <= max_hops - 1; with D = max_hops - 1,
    min(dist, D + 1) <= max_hops - g exactly when dist <= max_hops - g, so every push decision, every f
    of a pushed entry and hence the search are those of the deeper table (at most one extra expansion:
    a source more than max_hops away). A 1-hop search then needs no BFS beyond the target itself."""
    return max(0, min(int(limits.anchor_depth), int(limits.max_hops) - 1))


def build_heuristic(adj: Adjacency, target: int, limits: SearchLimits,
                    scratch: Scratch) -> tuple[np.ndarray, np.ndarray, int]:
    """(anchors, h table, beyond) for `limits.heuristic`. Why each h is admissible (h(e) <= dist(e, t),
    the hop distance on the undirected view, a metric; infinite across components):

    BFS from anchor a to depth d gives D(x) = dist(a, x) when dist(a, x) <= d, and "unreached" otherwise,
    which means dist(a, x) >= d + 1 (or infinite). The triangle inequality gives, for every e and t,
    dist(e, t) >= dist(a, t) - dist(a, e) and dist(e, t) >= dist(a, e) - dist(a, t). Hence:
      - both reached: dist(e, t) >= |D(t) - D(e)|;
      - t reached, e not: dist(e, t) >= dist(a, e) - D(t) >= d + 1 - D(t);
      - e reached, t not: dist(e, t) >= dist(a, t) - D(e) >= d + 1 - D(e);
      - neither: dist(e, t) >= 0.
    `landmark` takes the max of these over the anchors, a max of lower bounds; `anchor` (docs/method.md)
    keeps only the first case's one-sided term [D(t) - D(e)]+, so it is no larger than `landmark`.
    `target` is the landmark term for a = t: D(t) = 0, so h(e) = D(e) = dist(e, t) when e is within d
    hops (exact) and d + 1 otherwise. No other anchor can raise it: within d hops it is already the
    true distance, and beyond, each case above is at most d + 1 since every D lies in [0, d]; so the
    sampled anchors would be k BFS runs for nothing, and `target` runs only the one from t.

    With `max_degree_through`, dist is the distance on the restricted graph (inner nodes within the
    cap), and each BFS runs on it: nodes over the cap are reached but not expanded, the BFS's start
    excepted, so D(x) is the restricted distance from a to x within d, and "unreached" means it is
    more than d. That distance is no metric: joining a path a -> x to a path x -> t puts x inside,
    which needs x within the cap. The two inequalities above route through e and through t
    respectively, so for a node e the search may push (within the cap, or t itself, h(t) = 0 anyway):
      - dist(e, t) >= dist(a, t) - dist(a, e) holds as it is (the first case and "e reached, t not");
      - dist(e, t) >= dist(a, e) - dist(a, t) needs t within the cap; a landmark table for a target
        over the cap leaves these terms out ("t reached, e not" and the negative side of the first).
    A source over the cap is never pushed, but its h would be the root's f: `kernels._search` starts
    such a source at f = 0. `target` needs neither: it is the distance from t on the restricted
    graph itself, exact within d hops, d + 1 beyond, for every node.
    """
    t = int(target)
    if limits.heuristic == "target":
        depth = target_depth(limits)
        return np.zeros(0, np.int64), kernels.bounded_bfs(adj.indptr, adj.nbr, t, depth, limits.cap), depth + 1
    if limits.heuristic not in HEURISTICS:
        raise ValueError(f"unknown heuristic {limits.heuristic!r}; expected one of {', '.join(HEURISTICS)}")
    anchors = sample_anchors(adj, t, limits.anchors, limits.anchor_hops,
                             np.random.default_rng([limits.seed, t]), scratch, limits.cap).astype(np.int64)
    kernel = kernels.anchor_heuristic if limits.heuristic == "anchor" else kernels.landmark_heuristic
    return anchors, kernel(adj.indptr, adj.nbr, anchors, t, int(limits.anchor_depth), scratch.dist,
                           scratch.queue, limits.cap), 0


def sample_anchors(adj: Adjacency, target: int, k: int, m: int, rng: np.random.Generator,
                   scratch: Scratch | None = None, cap: int = -1) -> np.ndarray:
    """k distinct nodes drawn uniformly from those 1..m hops from the target (fewer if there are fewer);
    with a degree cap (-1 = none), hops over nodes within it and none over it (any anchor gives an
    admissible bound; one over the cap would make each of its BFS runs cost a hub's neighbourhood)."""
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    scratch = scratch or Scratch(adj.num_nodes)
    candidates = kernels.neighbourhood(adj.indptr, adj.nbr, int(target), int(m), scratch.dist, scratch.queue,
                                       int(cap))
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
                heuristic: Heuristic | None = None) -> SearchResult:
    """Up to K shortest simple paths source -> target within the hop limit, by multi-path A*. For many
    queries use `PathSearcher` (reused buffers, heuristic cached per target)."""
    start = time.perf_counter()
    if (trivial := _trivial(source, target, adj, start)) is not None:
        return trivial
    h = heuristic if heuristic is not None else Heuristic(adj, target, limits)
    return _search(adj, source, target, limits, h.table, h.beyond, start)


def bfs_paths(adj: Adjacency, source: int, target: int, limits: SearchLimits) -> SearchResult:
    """The exhaustive reference: expands every simple path within the hop limit in breadth-first
    order (no heuristic, no early stop), then keeps the K shortest: what "full BFS" costs. A node over
    `max_degree_through` is only ever a path's end (the source, or the target)."""
    start = time.perf_counter()
    if (trivial := _trivial(source, target, adj, start)) is not None:
        return trivial
    result = SearchResult()
    queue: deque[tuple[tuple[int, ...], tuple[int, ...]]] = deque([((source,), ())])
    indptr, nbr = adj.indptr, adj.nbr
    cap = limits.max_degree_through
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
            if cap is not None and v != target and int(indptr[v + 1]) - int(indptr[v]) > cap:
                continue
            queue.append((nodes + (v,), steps + (pos,)))
    result.seconds = time.perf_counter() - start
    return result


def _search(adj: Adjacency, source: int, target: int, limits: SearchLimits, table: np.ndarray, beyond: int,
            start: float) -> SearchResult:
    """The A* loop itself runs compiled (`kernels.astar`)."""
    found = kernels.astar(adj.indptr, adj.nbr, table, beyond, source, target, limits.max_paths, limits.max_hops,
                          limits.max_expansions, limits.cap)
    return _result(found, start)


def _result(found: tuple, start: float) -> SearchResult:  # (nodes, steps, offsets, expanded, truncated)
    nodes, steps, offsets, expanded, truncated = found
    nodes, steps, offsets = nodes.tolist(), steps.tolist(), offsets.tolist()
    result = SearchResult(nodes_expanded=int(expanded), truncated=bool(truncated))
    for i in range(len(offsets) - 1):
        lo, hi = offsets[i], offsets[i + 1]
        result.steps.append(steps[lo:hi])
        result.nodes.append(nodes[lo + i: hi + i + 1])
    result.seconds = time.perf_counter() - start
    return result


class PathSearcher:
    """A* over one KG with BFS buffers allocated once. The `target` heuristic is the BFS distance table
    from the target, written into the reused buffer and undone after the search: O(what the BFS
    reaches) per query, never O(nodes); `search_many` runs a batch of pairs in one compiled call. The
    anchor-based tables (k BFS each, dense) are cached per target (rows often share an answer;
    `cache_size=0` rebuilds them for every query)."""

    def __init__(self, adj: Adjacency, limits: SearchLimits, cache_size: int = 64) -> None:
        self.adj, self.limits, self.cache_size = adj, limits, cache_size
        self.scratch = Scratch(adj.num_nodes)
        self._cache: OrderedDict[int, Heuristic] = OrderedDict()

    def heuristic(self, target: int) -> Heuristic:
        h = self._cache.get(target)
        if h is None:
            h = Heuristic(self.adj, target, self.limits, self.scratch)
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
        adj, scratch = self.adj, self.scratch
        if (trivial := _trivial(source, target, adj, start)) is not None:
            return trivial
        if limits.heuristic != "target":
            h = self.heuristic(target)
            return _search(adj, source, target, limits, h.table, h.beyond, start)
        found = kernels.target_astar(adj.indptr, adj.nbr, scratch.dist, scratch.queue, scratch.other_dist,
                                     scratch.other_queue, int(limits.anchor_depth), source, target, limits.max_paths,
                                     limits.max_hops, limits.max_expansions, limits.cap)
        return _result(found, start)

    def search_many(self, sources: np.ndarray | list[int], targets: np.ndarray | list[int],
                    max_hops: np.ndarray | list[int] | None = None) -> SearchBatch:
        """`search` for every (sources[j], targets[j]) pair, optionally with its own hop limit: with the
        `target` heuristic ONE compiled call loops over the pairs (the fixed cost of a call, which is
        most of a search that finds nothing, is paid once per batch); the same paths and counts as a
        `search` per pair. Other heuristics search pair by pair."""
        start = time.perf_counter()
        src = np.asarray(sources, dtype=np.int64).reshape(-1)
        dst = np.asarray(targets, dtype=np.int64).reshape(-1)
        hops = (np.full(len(src), self.limits.max_hops, np.int64) if max_hops is None
                else np.asarray(max_hops, dtype=np.int64).reshape(-1))
        if not len(src) == len(dst) == len(hops):
            raise ValueError(f"search_many: {len(src)} sources, {len(dst)} targets, {len(hops)} hop limits")
        n = self.adj.num_nodes
        if (j := kernels.first_out_of_range(src, dst, n)) >= 0:
            raise IndexError(f"node id out of range in pair {j}: {int(src[j])} or {int(dst[j])} "
                             f"(graph has {n} nodes)")
        if self.limits.heuristic != "target":
            return SearchBatch.from_results([self.search(int(s), int(t), int(h))
                                             for s, t, h in zip(src, dst, hops, strict=True)])
        lim, adj = self.limits, self.adj
        scratch = self.scratch
        found = kernels.target_astar_many(adj.indptr, adj.nbr, scratch.dist, scratch.queue, scratch.other_dist,
                                          scratch.other_queue, int(lim.anchor_depth), src, dst, hops,
                                          int(lim.max_paths), int(lim.max_expansions), lim.cap)
        seconds = np.full(len(src), (time.perf_counter() - start) / max(len(src), 1))
        return SearchBatch(*found, seconds=seconds)
