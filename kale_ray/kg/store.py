"""The KG artifact: Arrow tables on disk, a networkit graph, and CSR arrays for search.

On disk (one directory): `entities.parquet` (id, key, label, aliases, description),
`relations.parquet` (id, key, label), `triples.parquet` (head, relation, tail: one row per edge, parallel
edges and self-loops kept), `graph.nkbg` (the same directed multigraph in networkit's binary format)
and `manifest.json`. The triples table is the edge -> relation table; the graph file lets networkit
tools open the KG without going through Parquet.

Search does not call networkit per neighbour (a Python call per edge is the slow part of a search);
it runs over CSR numpy arrays of the *undirected* view, one entry per distinct neighbour, each
remembering one stored edge joining the two nodes and whether walking it goes against its direction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kale_ray.artifacts import Manifest, atomic_write_parquet

ENTITIES, RELATIONS, TRIPLES, GRAPH = "entities.parquet", "relations.parquet", "triples.parquet", "graph.nkbg"

ENTITY_SCHEMA = pa.schema([("id", pa.int64()), ("key", pa.string()), ("label", pa.string()),
                           ("aliases", pa.list_(pa.string())), ("description", pa.string())])
RELATION_SCHEMA = pa.schema([("id", pa.int32()), ("key", pa.string()), ("label", pa.string())])
TRIPLE_SCHEMA = pa.schema([("head", pa.int64()), ("relation", pa.int32()), ("tail", pa.int64())])


class KGError(ValueError):
    """A KG artifact or source that cannot be read, phrased for the person who pointed at it."""


@dataclass
class KGTables:
    """Everything a source produced, as columns ready to be written."""

    keys: list[str]
    labels: list[str]
    aliases: list[list[str]] | None
    descriptions: list[str | None] | None
    relation_keys: list[str]
    relation_labels: list[str]
    heads: np.ndarray
    relations: np.ndarray
    tails: np.ndarray


def write_kg(tables: KGTables, out: Path, *, config_hash: str, source: str, inputs: dict[str, Any],
             skipped: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """Write the Parquet tables, the networkit graph and the manifest (last, so it marks completion)."""
    import networkit as nk

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = len(tables.keys)
    heads = np.asarray(tables.heads, dtype=np.int64)
    rels = np.asarray(tables.relations, dtype=np.int32)
    tails = np.asarray(tables.tails, dtype=np.int64)
    if len(heads) and (heads.max() >= n or tails.max() >= n or min(heads.min(), tails.min()) < 0):
        raise KGError("triples refer to entity ids outside the entity table")
    aliases = tables.aliases if tables.aliases is not None else [[] for _ in range(n)]
    descriptions = tables.descriptions if tables.descriptions is not None else [None] * n
    entities = pa.table({"id": pa.array(np.arange(n, dtype=np.int64)), "key": pa.array(tables.keys, pa.string()),
                         "label": pa.array(tables.labels, pa.string()),
                         "aliases": pa.array(aliases, pa.list_(pa.string())),
                         "description": pa.array(descriptions, pa.string())}, schema=ENTITY_SCHEMA)
    relations = pa.table({"id": pa.array(np.arange(len(tables.relation_keys), dtype=np.int32)),
                          "key": pa.array(tables.relation_keys, pa.string()),
                          "label": pa.array(tables.relation_labels, pa.string())}, schema=RELATION_SCHEMA)
    triples = pa.table({"head": heads, "relation": rels, "tail": tails}, schema=TRIPLE_SCHEMA)
    atomic_write_parquet(out / ENTITIES, entities)
    atomic_write_parquet(out / RELATIONS, relations)
    atomic_write_parquet(out / TRIPLES, triples)

    t0 = time.monotonic()
    graph = nk.GraphFromCoo((heads, tails), n=n, directed=True) if len(heads) else nk.Graph(n, directed=True)
    tmp = out / f".{GRAPH}.tmp"
    nk.graphio.writeGraph(graph, str(tmp), nk.Format.NetworkitBinary)
    tmp.replace(out / GRAPH)
    degree = np.bincount(np.concatenate([heads, tails]), minlength=n) if n else np.zeros(0, np.int64)
    counts = {"entities": n, "relations": len(tables.relation_keys), "triples": int(len(heads)),
              "self_loops": int((heads == tails).sum()),
              "isolated_entities": int((degree == 0).sum()) if n else 0,
              "skipped": int(skipped.get("skipped", 0))}
    Manifest(stage="kg", config_hash=config_hash, config={"source": source}, inputs=inputs, counts=counts,
             extra={"skipped": skipped, "graph_seconds": round(time.monotonic() - t0, 3),
                    "max_degree": int(degree.max()) if n else 0, **(extra or {})}).write(out)
    return out


@dataclass
class Adjacency:
    """CSR of the undirected view: neighbours of u are nbr[indptr[u]:indptr[u+1]] (sorted, distinct).

    `edge[i]` is one stored triple joining u and nbr[i] (a forward one, u -> v, when there is one);
    `back[i]` says the walk u -> nbr[i] goes against that triple's direction. Self-loops are left
    out: a simple path can never use one.
    """

    indptr: np.ndarray
    nbr: np.ndarray
    edge: np.ndarray
    back: np.ndarray

    @property
    def num_nodes(self) -> int:
        return len(self.indptr) - 1

    @cached_property
    def degree(self) -> np.ndarray:
        return np.diff(self.indptr)

    @classmethod
    def from_triples(cls, heads: np.ndarray, tails: np.ndarray, n: int) -> Adjacency:
        m = len(heads)
        eid = np.arange(m, dtype=np.int64)
        src = np.concatenate([heads, tails]).astype(np.int64)
        dst = np.concatenate([tails, heads]).astype(np.int64)
        ids = np.concatenate([eid, eid])
        back = np.concatenate([np.zeros(m, bool), np.ones(m, bool)])
        keep = src != dst
        src, dst, ids, back = src[keep], dst[keep], ids[keep], back[keep]
        order = np.lexsort((ids, back, dst, src))
        src, dst, ids, back = src[order], dst[order], ids[order], back[order]
        first = np.ones(len(src), bool)
        first[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
        src, dst, ids, back = src[first], dst[first], ids[first], back[first]
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
        small = np.int32 if n < 2**31 else np.int64
        return cls(indptr=indptr, nbr=dst.astype(small), edge=ids, back=back)

    def bounded_bfs(self, source: int, depth: int) -> np.ndarray:
        """Hop distances from `source` on the undirected view up to `depth`; -1 = not reached."""
        from kale_ray.kg.kernels import bounded_bfs

        return bounded_bfs(self.indptr, self.nbr, int(source), int(depth))


@dataclass
class KG:
    """A loaded KG: tables as arrays and the search adjacency. Build once per process (per actor)."""

    path: Path | None
    keys: list[str]
    labels: list[str]
    relation_keys: list[str]
    relation_labels: list[str]
    heads: np.ndarray
    relations: np.ndarray
    tails: np.ndarray
    aliases: pa.ChunkedArray | None = None
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def num_entities(self) -> int:
        return len(self.keys)

    @property
    def num_triples(self) -> int:
        return len(self.heads)

    @cached_property
    def key_to_id(self) -> dict[str, int]:
        return {key: i for i, key in enumerate(self.keys)}

    @cached_property
    def relation_index(self) -> dict[str, int]:
        return {key: i for i, key in enumerate(self.relation_keys)}

    @cached_property
    def adjacency(self) -> Adjacency:
        return Adjacency.from_triples(self.heads, self.tails, self.num_entities)

    def id_of(self, key: str) -> int | None:
        return self.key_to_id.get(key)

    def triple_keys(self, edge: int) -> tuple[str, str, str]:
        return (self.keys[int(self.heads[edge])], self.relation_keys[int(self.relations[edge])],
                self.keys[int(self.tails[edge])])

    def networkit_graph(self, undirected: bool = False) -> Any:
        """The stored networkit graph (directed multigraph), or its simple undirected view."""
        import networkit as nk

        if self.path is not None and (self.path / GRAPH).is_file() and not undirected:
            return nk.graphio.readGraph(str(self.path / GRAPH), nk.Format.NetworkitBinary)
        graph = nk.GraphFromCoo((self.heads, self.tails), n=self.num_entities, directed=not undirected)
        if undirected:
            graph.removeMultiEdges()
            graph.removeSelfLoops()
        return graph


def load_kg(path: Path, check_graph: bool = True) -> KG:
    """Read a KG artifact; with `check_graph`, the networkit graph must hold exactly the triples' edges."""
    path = Path(path)
    for name in (ENTITIES, RELATIONS, TRIPLES):
        if not (path / name).is_file():
            raise KGError(f"{path} is not a KG artifact: {name} is missing (build one with `kale-ray kg build`)")
    entities = pq.read_table(path / ENTITIES, columns=["key", "label", "aliases"])
    relations = pq.read_table(path / RELATIONS, columns=["key", "label"])
    triples = pq.read_table(path / TRIPLES)
    manifest = Manifest.read(path)
    kg = KG(path=path, keys=entities.column("key").to_pylist(), labels=entities.column("label").to_pylist(),
            relation_keys=relations.column("key").to_pylist(),
            relation_labels=relations.column("label").to_pylist(),
            heads=triples.column("head").to_numpy(), relations=triples.column("relation").to_numpy(),
            tails=triples.column("tail").to_numpy(), aliases=entities.column("aliases"),
            manifest=manifest.__dict__ if manifest else {})
    if check_graph and (path / GRAPH).is_file():
        graph = kg.networkit_graph()
        if graph.numberOfNodes() != kg.num_entities or graph.numberOfEdges() != kg.num_triples:
            raise KGError(f"{path}: {GRAPH} has {graph.numberOfNodes()} nodes / {graph.numberOfEdges()} edges "
                          f"but the tables have {kg.num_entities} / {kg.num_triples}: rebuild the KG")
    return kg
