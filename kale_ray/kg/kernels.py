"""Compiled search loops over CSR arrays (numba); without numba the same code runs as plain Python.

The multi-path A* keeps its queue entries in flat arrays: entry i is a path ending at node[i], whose
previous entry is parent[i] (a tree of paths, so many paths share prefixes), reached over CSR position
pos[i], with cost g[i] and priority f[i]. The heap orders entries by (f, -g, entry index): among equal
f the deeper path first, then insertion order (as the networkx version in bench/paths.py does).

Every kernel takes `cap` (`paths.max_degree_through`; -1 = none): a node whose degree (distinct
neighbours, indptr[v + 1] - indptr[v]) exceeds it is never an inner node of a path. A BFS labels
such a node when it reaches it but does not expand it (unless it is the BFS's own start), so its
distances are those of the restricted graph, where a path's inner nodes are all within the cap; the
A* never pushes such a node unless it is the target. A hub's neighbourhood is then never enumerated,
except as the source or the target of a search.
"""

from __future__ import annotations

import numpy as np

try:
    from numba import njit
except ImportError:  # pragma: no cover - numba is a core dependency; this keeps the code importable
    def njit(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        if args and callable(args[0]):
            return args[0]
        return lambda fn: fn


@njit(cache=True)
def passable(indptr: np.ndarray, v: int, cap: int) -> bool:
    """Whether v may be an inner node of a path: no cap (cap < 0), or its degree within it."""
    return cap < 0 or indptr[v + 1] - indptr[v] <= cap


@njit(cache=True)
def bounded_bfs(indptr: np.ndarray, nbr: np.ndarray, source: int, depth: int, cap: int = -1) -> np.ndarray:
    n = len(indptr) - 1
    dist = np.empty(n, np.int16)
    dist[:] = -1
    bfs_into(indptr, nbr, source, depth, dist, np.empty(n, np.int64), cap)
    return dist


@njit(cache=True)
def bfs_into(indptr: np.ndarray, nbr: np.ndarray, source: int, depth: int, dist: np.ndarray,
              queue: np.ndarray, cap: int) -> int:
    """BFS up to `depth` writing into `dist` (all -1 on entry); visited nodes are queue[:returned].
    Callers hand in reused scratch arrays and undo what was written with `_reset`, so a search costs
    what its BFS reaches, not O(nodes). Nodes over `cap` are reached but not expanded (the source is)."""
    dist[source] = 0
    queue[0] = source
    head, tail = 0, 1
    while head < tail:
        u = queue[head]
        head += 1
        du = dist[u]
        if du >= depth or (u != source and not passable(indptr, u, cap)):
            continue
        for p in range(indptr[u], indptr[u + 1]):
            v = nbr[p]
            if dist[v] < 0:
                dist[v] = du + 1
                queue[tail] = v
                tail += 1
    return tail


@njit(cache=True)
def first_out_of_range(sources: np.ndarray, targets: np.ndarray, n: int) -> int:
    """Index of the first pair with an id outside [0, n), or -1 (one pass, no temporaries)."""
    for j in range(len(sources)):
        if not (0 <= sources[j] < n and 0 <= targets[j] < n):
            return j
    return -1


@njit(cache=True)
def reset_dist(dist: np.ndarray, queue: np.ndarray, tail: int) -> None:
    for i in range(tail):
        dist[queue[i]] = -1


@njit(cache=True)
def neighbourhood(indptr: np.ndarray, nbr: np.ndarray, source: int, depth: int, dist: np.ndarray,
                  queue: np.ndarray, cap: int) -> np.ndarray:
    """Nodes 1..depth hops from `source` over inner nodes within `cap`, ascending, less those over the
    cap themselves (anchors come from here, and an anchor over the cap would cost its whole
    neighbourhood per BFS); cost proportional to what is reached."""
    tail = bfs_into(indptr, nbr, source, depth, dist, queue, cap)
    out = np.empty(tail, np.int64)
    k = 0
    for i in range(1, tail):
        if passable(indptr, queue[i], cap):
            out[k] = queue[i]
            k += 1
    reset_dist(dist, queue, tail)
    return np.sort(out[:k])


@njit(cache=True)
def anchor_heuristic(indptr: np.ndarray, nbr: np.ndarray, anchors: np.ndarray, target: int, depth: int,
                     dist: np.ndarray, queue: np.ndarray, cap: int) -> np.ndarray:
    """docs/method.md's bound: h(e) = max_i [dist(a_i, target) - dist(a_i, e)]+, a term with an unreached
    node = 0. Only nodes some anchor BFS reached can get h > 0, so only those are written."""
    h = np.zeros(len(indptr) - 1, np.int16)
    for a in anchors:
        tail = bfs_into(indptr, nbr, a, depth, dist, queue, cap)
        to_target = dist[target]
        if to_target >= 0:
            for i in range(tail):
                e = queue[i]
                term = to_target - dist[e]
                if term > h[e]:
                    h[e] = term
        reset_dist(dist, queue, tail)
    return h


@njit(cache=True)
def landmark_heuristic(indptr: np.ndarray, nbr: np.ndarray, anchors: np.ndarray, target: int, depth: int,
                       dist: np.ndarray, queue: np.ndarray, cap: int) -> np.ndarray:
    """The two-sided landmark bound h(e) = max_i |dist(a_i, target) - dist(a_i, e)|, where a node the
    depth-d BFS did not reach is at least d + 1 away: reached/unreached terms are d + 1 - (the reached
    distance), both unreached = 0. A target over `cap` keeps only the terms whose proof does not route
    through it: dist(a_i, target) - dist(a_i, e), and d + 1 - dist(a_i, e) for a target the BFS did
    not reach. (Proof of admissibility: `paths.build_heuristic`.)"""
    n = len(indptr) - 1
    h = np.zeros(n, np.int16)
    beyond = depth + 1
    two_sided = passable(indptr, target, cap)
    for a in anchors:
        tail = bfs_into(indptr, nbr, a, depth, dist, queue, cap)
        to_target = dist[target]
        if to_target >= 0 and two_sided:
            # Every node this BFS did not reach is >= beyond - to_target (>= 1) from the target.
            floor = beyond - to_target
            for e in range(n):
                if dist[e] < 0 and floor > h[e]:
                    h[e] = floor
        for i in range(tail):
            e = queue[i]
            if to_target < 0:
                term = beyond - dist[e]
            else:
                term = abs(to_target - dist[e]) if two_sided else to_target - dist[e]
            if term > h[e]:
                h[e] = term
        reset_dist(dist, queue, tail)
    return h


@njit(cache=True)
def _before(a: int, b: int, f: np.ndarray, g: np.ndarray) -> bool:
    if f[a] != f[b]:
        return f[a] < f[b]
    if g[a] != g[b]:
        return g[a] > g[b]
    return a < b


@njit(cache=True)
def _push(heap: np.ndarray, size: int, e: int, f: np.ndarray, g: np.ndarray) -> None:
    i = size
    heap[i] = e
    while i > 0:
        up = (i - 1) // 2
        if _before(heap[i], heap[up], f, g):
            heap[i], heap[up] = heap[up], heap[i]
            i = up
        else:
            break


@njit(cache=True)
def _pop(heap: np.ndarray, size: int, f: np.ndarray, g: np.ndarray) -> int:
    top = heap[0]
    size -= 1
    heap[0] = heap[size]
    i = 0
    while True:
        left, right, best = 2 * i + 1, 2 * i + 2, i
        if left < size and _before(heap[left], heap[best], f, g):
            best = left
        if right < size and _before(heap[right], heap[best], f, g):
            best = right
        if best == i:
            break
        heap[i], heap[best] = heap[best], heap[i]
        i = best
    return top


@njit(cache=True)
def _grow(a: np.ndarray) -> np.ndarray:
    out = np.empty(2 * len(a), a.dtype)
    out[: len(a)] = a
    return out


@njit(cache=True)
def new_buffers(cap: int):  # noqa: ANN201
    """The A* entry arrays (node, parent, pos, g, f, heap); `_search` grows them as needed and hands
    them back, so a batch of searches reuses one set."""
    return (np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int32),
            np.empty(cap, np.int32), np.empty(cap, np.int64))


@njit(cache=True)
def astar(indptr: np.ndarray, nbr: np.ndarray, h: np.ndarray, beyond: int, source: int, target: int,
          max_paths: int, max_hops: int, max_expansions: int, cap: int):  # noqa: ANN201
    """Returns (path nodes, path CSR positions, offsets, expanded, truncated): path i is
    nodes[offsets[i] + i : offsets[i + 1] + i + 1] over CSR positions pos[offsets[i] : offsets[i + 1]].
    h[v] < 0 stands for `beyond`, so a BFS distance table (-1 = not reached) is an h table as it is."""
    found = np.empty(max_paths, np.int64)
    n_found, expanded, truncated, bufs = _search(indptr, nbr, h, beyond, source, target, max_paths, max_hops,
                                                 max_expansions, new_buffers(1024), found, cap)
    node, parent, pos, g = bufs[0], bufs[1], bufs[2], bufs[3]
    return _unroll(found[:n_found], node, parent, pos, g) + (expanded, truncated)


@njit(cache=True)
def _search(indptr: np.ndarray, nbr: np.ndarray, h: np.ndarray, beyond: int, source: int, target: int,
            max_paths: int, max_hops: int, max_expansions: int, bufs, found: np.ndarray,  # noqa: ANN001
            cap: int):  # noqa: ANN202
    """The multi-path A* loop: goal entries go to found[:n_found]; returns (n_found, expanded,
    truncated, bufs), `bufs` possibly grown (entries index into them until the next search). Nodes
    over `cap` other than the target are never pushed. A source over the cap starts at f = 0: the
    anchor bounds hold at the nodes a path may pass through (`paths.build_heuristic`), and the root's
    f is only ever compared with the hop limit (it is the only entry when popped)."""
    node, parent, pos, g, f, heap = bufs
    f0 = h[source] if h[source] >= 0 else beyond
    if not passable(indptr, source, cap):
        f0 = 0
    node[0], parent[0], pos[0], g[0], f[0] = source, -1, -1, 0, f0
    count, size = 1, 0
    _push(heap, size, 0, f, g)
    size += 1
    n_found, expanded, truncated = 0, 0, False
    while size > 0 and n_found < max_paths:
        e = _pop(heap, size, f, g)
        size -= 1
        if f[e] > max_hops:
            break
        u = node[e]
        if u == target:
            found[n_found] = e
            n_found += 1
            continue
        ge = g[e]
        if ge >= max_hops:
            continue
        if expanded >= max_expansions:
            truncated = True
            break
        expanded += 1
        lo, hi = indptr[u], indptr[u + 1]
        if ge + 1 == max_hops:
            # Only the target may come last: one binary search in the sorted neighbour list.
            lo = lo + np.searchsorted(nbr[lo:hi], target)
            hi = lo + 1 if lo < hi and nbr[lo] == target else lo
        for p in range(lo, hi):
            v = nbr[p]
            hv = h[v]
            fv = ge + 1 + (hv if hv >= 0 else beyond)
            if fv > max_hops or (v != target and not passable(indptr, v, cap)):
                continue
            a = e
            repeated = False
            while a >= 0:
                if node[a] == v:
                    repeated = True
                    break
                a = parent[a]
            if repeated:
                continue
            if count == len(node):
                node, parent, pos, g, f, heap = _grow(node), _grow(parent), _grow(pos), _grow(g), _grow(f), _grow(heap)
            node[count], parent[count], pos[count], g[count], f[count] = v, e, p, ge + 1, fv
            _push(heap, size, count, f, g)
            size += 1
            count += 1
    return n_found, expanded, truncated, (node, parent, pos, g, f, heap)


@njit(cache=True)
def _write_path(e: int, k: int, shift: int, node: np.ndarray, parent: np.ndarray, pos: np.ndarray,
            nodes: np.ndarray, steps: np.ndarray) -> None:
    """Write the path ending at entry e backwards: steps[..k], nodes[..k + shift + 1] (a path's nodes
    sit `shift` places after its steps, one more node than steps per earlier path)."""
    nodes[k + shift + 1] = node[e]
    while parent[e] >= 0:
        steps[k] = pos[e]
        e = parent[e]
        nodes[k + shift] = node[e]
        k -= 1


@njit(cache=True)
def _unroll(found: np.ndarray, node: np.ndarray, parent: np.ndarray, pos: np.ndarray, g: np.ndarray):  # noqa: ANN202
    """The goal entries' paths out of the entry tree, in walking order, as flat arrays."""
    offsets = np.zeros(len(found) + 1, np.int64)
    for i in range(len(found)):
        offsets[i + 1] = offsets[i] + g[found[i]]
    nodes = np.empty(offsets[-1] + len(found), np.int64)
    steps = np.empty(offsets[-1], np.int64)
    for i in range(len(found)):
        _write_path(found[i], offsets[i + 1] - 1, i, node, parent, pos, nodes, steps)
    return nodes, steps, offsets


@njit(cache=True)
def _bfs_level(indptr: np.ndarray, nbr: np.ndarray, queue: np.ndarray, dist: np.ndarray, other: np.ndarray,
               lo: int, hi: int, tail: int, radius: int, other_start: int, cap: int) -> tuple[int, bool]:
    """Grows one side of `within_hops` by a level (its frontier is queue[lo:hi]); returns the new tail
    and whether a node the other side reached (other[v] >= 0) turned up where two halves of a path may
    join: the other side's start, or a node within `cap` (anywhere else it would be an inner node over
    the cap). Frontier nodes over the cap are not expanded, except this side's start (queue[0])."""
    for i in range(lo, hi):
        u = queue[i]
        if i > 0 and not passable(indptr, u, cap):
            continue
        for p in range(indptr[u], indptr[u + 1]):
            v = nbr[p]
            if other[v] >= 0 and (v == other_start or passable(indptr, v, cap)):
                return tail, True
            if dist[v] < 0:
                dist[v] = radius + 1
                queue[tail] = v
                tail += 1
    return tail, False


@njit(cache=True)
def within_hops(indptr: np.ndarray, nbr: np.ndarray, source: int, target: int, k: int, ds: np.ndarray,
                qs: np.ndarray, dt: np.ndarray, qt: np.ndarray, cap: int = -1) -> bool:
    """Whether source and target are at most k hops apart (undirected view): a BFS from each end, growing
    the smaller frontier a level at a time while the two radii sum to less than k, until a node reached
    from one side turns up on the other. If dist = d <= rs + rt, the node d - min(rs, d) hops before the
    target on a shortest path lies in both balls, so the balls meet exactly when d <= k. Costs two
    balls of radius about k / 2 instead of one of radius k - 1. ds and dt are all -1 on entry and again
    on return. With `cap` it is the distance of the restricted graph (inner nodes within the cap): each
    ball holds restricted distances, and the meeting node of the argument is an inner node or an end,
    which is where `_bfs_level` lets the balls meet."""
    ds[source], qs[0], dt[target], qt[0] = 0, source, 0, target
    s_lo, s_hi, s_tail, rs = 0, 1, 1, 0
    t_lo, t_hi, t_tail, rt = 0, 1, 1, 0
    met = source == target
    while not met and rs + rt < k and s_lo < s_hi and t_lo < t_hi:
        if s_hi - s_lo <= t_hi - t_lo:
            s_tail, met = _bfs_level(indptr, nbr, qs, ds, dt, s_lo, s_hi, s_tail, rs, target, cap)
            s_lo, s_hi, rs = s_hi, s_tail, rs + 1
        else:
            t_tail, met = _bfs_level(indptr, nbr, qt, dt, ds, t_lo, t_hi, t_tail, rt, source, cap)
            t_lo, t_hi, rt = t_hi, t_tail, rt + 1
    reset_dist(ds, qs, s_tail)
    reset_dist(dt, qt, t_tail)
    return met


@njit(cache=True)
def _last_level_lazily(indptr: np.ndarray, nbr: np.ndarray, source: int, target: int, depth: int,
                       dist: np.ndarray, queue: np.ndarray, cap: int) -> int:
    """The `target` h table for D = depth = max_hops - 1 >= 1, exact wherever the search can tell: BFS
    from the target to D - 1, then distance D only where it changes a push. A child at depth g of a node
    with h(v) >= D has f = g + h(v) >= g + D, within the hop limit only for g = 1 and h(v) = D; so
    beyond D - 1 the table needs D exactly for the source's neighbours alone (the source's own f, D or
    D + 1, is never compared: it is the only entry when popped). Marks those (a neighbour w at D - 1)
    when that scans fewer adjacency entries than the BFS's last level would, else runs that level.
    With `cap`, both ways give the restricted distances `bfs_into` would: neither expands a node over
    the cap (but the target), and the lazy way skips source neighbours over it, which are never pushed.
    Returns the count of queue entries to reset."""
    tail = bfs_into(indptr, nbr, target, depth - 1, dist, queue, cap)
    first = tail
    while first > 0 and dist[queue[first - 1]] == depth - 1:
        first -= 1
    level_cost, lazy_cost = 0, 0
    for i in range(first, tail):
        u = queue[i]
        if u == target or passable(indptr, u, cap):
            level_cost += indptr[u + 1] - indptr[u]
    for p in range(indptr[source], indptr[source + 1]):
        if passable(indptr, nbr[p], cap):
            lazy_cost += indptr[nbr[p] + 1] - indptr[nbr[p]]
    if lazy_cost < level_cost:
        for p in range(indptr[source], indptr[source + 1]):
            v = nbr[p]
            if dist[v] >= 0 or not passable(indptr, v, cap):
                continue
            for q in range(indptr[v], indptr[v + 1]):
                w = nbr[q]
                if dist[w] == depth - 1 and (w == target or passable(indptr, w, cap)):
                    dist[v] = depth
                    queue[tail] = v
                    tail += 1
                    break
        return tail
    end = tail
    for i in range(first, end):
        u = queue[i]
        if u != target and not passable(indptr, u, cap):
            continue
        for p in range(indptr[u], indptr[u + 1]):
            v = nbr[p]
            if dist[v] < 0:
                dist[v] = depth
                queue[tail] = v
                tail += 1
    return tail


@njit(cache=True)
def _target_search(indptr: np.ndarray, nbr: np.ndarray, dist: np.ndarray, queue: np.ndarray, dist2: np.ndarray,
                   queue2: np.ndarray, anchor_depth: int, source: int, target: int, max_paths: int, max_hops: int,
                   max_expansions: int, bufs, found: np.ndarray, cap: int):  # noqa: ANN001, ANN202
    """`_search` with the `target` heuristic: h is the BFS from the target to depth
    D = min(anchor_depth, max_hops - 1) written into the reused `dist` buffer (unreached = D + 1),
    undone afterwards. When D = max_hops - 1 and the ends are more than max_hops apart (`within_hops`,
    far cheaper than that BFS), the search is known without running it: the source (h = D + 1 =
    max_hops) is popped and expanded, and every neighbour v, at least max_hops from the target, gets
    f = 1 + D + 1 > max_hops; so no path, one expansion (none, truncated, under a zero budget). Else the
    table's last level is filled only where it matters (`_last_level_lazily`). With `cap` every step
    is that of the restricted graph (the table is its exact distance within D, so the same argument
    holds; a source over the cap starts at f = 0 in `_search`, expanded all the same)."""
    depth = max(0, min(anchor_depth, max_hops - 1))
    if max_hops >= 1 and depth == max_hops - 1:
        if not within_hops(indptr, nbr, source, target, max_hops, dist, queue, dist2, queue2, cap):
            return 0, 1 if max_expansions >= 1 else 0, max_expansions < 1, bufs
    if max_hops >= 2 and depth == max_hops - 1:
        reached = _last_level_lazily(indptr, nbr, source, target, depth, dist, queue, cap)
    else:
        reached = bfs_into(indptr, nbr, target, depth, dist, queue, cap)
    out = _search(indptr, nbr, dist, depth + 1, source, target, max_paths, max_hops, max_expansions, bufs, found,
                  cap)
    reset_dist(dist, queue, reached)
    return out


@njit(cache=True)
def target_astar(indptr: np.ndarray, nbr: np.ndarray, dist: np.ndarray, queue: np.ndarray, dist2: np.ndarray,
                 queue2: np.ndarray, anchor_depth: int, source: int, target: int, max_paths: int, max_hops: int,
                 max_expansions: int, cap: int):  # noqa: ANN201
    """`astar` with the `target` heuristic (`_target_search`), returning what `astar` does."""
    found = np.empty(max_paths, np.int64)
    n_found, expanded, truncated, bufs = _target_search(indptr, nbr, dist, queue, dist2, queue2, anchor_depth,
                                                        source, target, max_paths, max_hops, max_expansions,
                                                        new_buffers(1024), found, cap)
    return _unroll(found[:n_found], bufs[0], bufs[1], bufs[2], bufs[3]) + (expanded, truncated)


@njit(cache=True)
def target_astar_many(indptr: np.ndarray, nbr: np.ndarray, dist: np.ndarray, queue: np.ndarray, dist2: np.ndarray,
                      queue2: np.ndarray, anchor_depth: int, sources: np.ndarray, targets: np.ndarray,
                      max_hops: np.ndarray, max_paths: int, max_expansions: int, cap: int):  # noqa: ANN201
    """`target_astar` for every pair in one call (the same `_target_search`, so the same result as one
    call per pair), reusing the entry arrays across pairs. Pair j's paths are paths
    pair_offsets[j] : pair_offsets[j + 1]; path i is laid out as in `astar`, over all pairs:
    nodes[offsets[i] + i : offsets[i + 1] + i + 1], steps[offsets[i] : offsets[i + 1]].
    source == target gives one empty path, as `paths._trivial` does. Ids must be in range."""
    n = len(sources)
    pair_offsets = np.zeros(n + 1, np.int64)
    expanded = np.zeros(n, np.int64)
    truncated = np.zeros(n, np.bool_)
    offsets = np.zeros(n * max(max_paths, 1) + 1, np.int64)
    nodes = np.empty(1024, np.int64)
    steps = np.empty(1024, np.int64)
    bufs = new_buffers(1024)
    found = np.empty(max_paths, np.int64)
    n_paths = 0
    for j in range(n):
        source, target = sources[j], targets[j]
        n_found = 0
        if source == target:
            n_found = 1
        else:
            n_found, n_expanded, cut, bufs = _target_search(indptr, nbr, dist, queue, dist2, queue2, anchor_depth,
                                                            source, target, max_paths, max_hops[j],
                                                            max_expansions, bufs, found, cap)
            expanded[j], truncated[j] = n_expanded, cut
        node, parent, pos, g = bufs[0], bufs[1], bufs[2], bufs[3]
        for i in range(n_found):
            length = 0 if source == target else g[found[i]]
            lo = offsets[n_paths]
            offsets[n_paths + 1] = lo + length
            while offsets[n_paths + 1] + n_paths + 1 > len(nodes):
                nodes = _grow(nodes)
            while offsets[n_paths + 1] > len(steps):
                steps = _grow(steps)
            if source == target:
                nodes[lo + n_paths] = source
            else:
                _write_path(found[i], lo + length - 1, n_paths, node, parent, pos, nodes, steps)
            n_paths += 1
        pair_offsets[j + 1] = n_paths
    total = offsets[n_paths]
    return (nodes[: total + n_paths].copy(), steps[:total].copy(), offsets[: n_paths + 1].copy(), pair_offsets,
            expanded, truncated)
