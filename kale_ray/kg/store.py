"""The KG artifact: Arrow tables for people and tools, memory-mapped arrays for the actors.

On disk (one directory, the same for every source):
- `entities.parquet` (id, key, label, aliases, description), `relations.parquet` (id, key, label),
  `triples.parquet` (head, relation, tail: one row per edge, parallel edges and self-loops kept);
- `arrays/`, read by `np.load(mmap_mode="r")` so every process on a node shares one copy
  (`kale_ray/kg/arrays.py`): `heads.npy`, `relations.npy`, `tails.npy` (the triples by edge id);
  `indptr.npy`, `nbr.npy`, `edge.npy`, `back.npy` (the search CSR below); `key.*` and `label.*` (the
  entity strings by id) with `key_order.npy` (ids in key order, for lookups by key); `alias*` (the
  linker's index, `kale_ray/kg/alias.py`);
- `manifest.json`, written last.

Small sources are collected in memory (`KGBuilder`) and written by `write_kg`; dump-scale sources are
built by Ray tasks of bounded memory (`kale_ray/kg/build.py`) into the same files. A networkit graph is
built from the arrays on demand (`KG.networkit_graph`), not stored.

Search does not call networkit per neighbour (a Python call per edge is the slow part of a search);
it runs over CSR numpy arrays of the *undirected* view, one entry per distinct neighbour, each
remembering one stored edge joining the two nodes and whether walking it goes against its direction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kale_ray import storage
from kale_ray.artifacts import Manifest, atomic_write_parquet
from kale_ray.kg.arrays import ARRAYS, StringTable, load_array, save_array, unique_edges

ENTITIES, RELATIONS, TRIPLES = "entities.parquet", "relations.parquet", "triples.parquet"
LAYOUT = 2  # artifact layout version: 2 = memory-mapped arrays + alias index

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
    """Write a KG collected in memory: the Parquet tables, the arrays and the manifest (last, so it marks
    completion). Ids are the builder's (first-seen order); `build.py` writes the same files at scale."""
    from kale_ray.kg.alias import AliasIndex, name_rows

    out = Path(out)
    (out / ARRAYS).mkdir(parents=True, exist_ok=True)
    n = len(tables.keys)
    heads = np.asarray(tables.heads, dtype=np.int64)
    rels = np.asarray(tables.relations, dtype=np.int32)
    tails = np.asarray(tables.tails, dtype=np.int64)
    if len(heads) and (heads.max() >= n or tails.max() >= n or min(heads.min(), tails.min()) < 0):
        raise KGError("triples refer to entity ids outside the entity table")
    aliases = tables.aliases if tables.aliases is not None else [[] for _ in range(n)]
    descriptions = tables.descriptions if tables.descriptions is not None else [None] * n
    keys = pa.array(tables.keys, pa.string())
    entities = pa.table({"id": pa.array(np.arange(n, dtype=np.int64)), "key": keys,
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

    arrays = out / ARRAYS
    for name, values in (("heads", heads), ("relations", rels), ("tails", tails)):
        save_array(arrays / f"{name}.npy", values)
    adj = Adjacency.from_triples(heads, tails, n)
    adj.save(arrays)
    StringTable.from_values(keys).save(arrays, "key")
    StringTable.from_values(entities.column("label")).save(arrays, "label")
    save_array(arrays / "key_order.npy", pc.sort_indices(keys).to_numpy().astype(np.int64))
    index = AliasIndex.build(name_rows(np.arange(n), tables.keys, tables.labels, aliases), adj.degree)
    index.save(arrays)
    degree = np.bincount(np.concatenate([heads, tails]), minlength=n) if n else np.zeros(0, np.int64)
    counts = {"entities": n, "relations": len(tables.relation_keys), "triples": int(len(heads)),
              "self_loops": int((heads == tails).sum()),
              "isolated_entities": int((degree == 0).sum()) if n else 0,
              "skipped": int(skipped.get("skipped", 0))}
    write_manifest(out, config_hash=config_hash, source=source, inputs=inputs, counts=counts,
                   extra={"skipped": skipped, "max_degree": int(degree.max()) if n else 0,
                          "alias_names": len(index), "alias_max_tokens": index.max_tokens,
                          "keys_sorted": False, **(extra or {})})
    return out


def write_manifest(out: Path, *, config_hash: str, source: str, inputs: dict[str, Any], counts: dict[str, Any],
                   extra: dict[str, Any]) -> None:
    from kale_ray.ray_utils import this_node

    # The node that assembled the artifact (this process: the driver for a KG read in one process, the
    # one pinned build task with an object-store workdir).
    Manifest(stage="kg", config_hash=config_hash, config={"source": source}, inputs=inputs, counts=counts,
             extra={"layout": LAYOUT, "nodes": [this_node()], **extra}).write(out)


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
        src, dst, ids, back = unique_edges(src, dst, ids, back)
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
        small = np.int32 if n < 2**31 else np.int64
        return cls(indptr=indptr, nbr=dst.astype(small), edge=ids, back=back)

    def save(self, directory: Path) -> None:
        for name in ("indptr", "nbr", "edge", "back"):
            save_array(Path(directory) / f"{name}.npy", getattr(self, name))

    @classmethod
    def load(cls, directory: Path) -> Adjacency:
        """The CSR mapped from disk, read-only and shared with every other process that maps it."""
        return cls(*(load_array(Path(directory) / f"{name}.npy") for name in ("indptr", "nbr", "edge", "back")))

    def bounded_bfs(self, source: int, depth: int) -> np.ndarray:
        """Hop distances from `source` on the undirected view up to `depth`; -1 = not reached."""
        from kale_ray.kg.kernels import bounded_bfs

        return bounded_bfs(self.indptr, self.nbr, int(source), int(depth))


@dataclass
class KG:
    """A loaded KG. From an artifact (`load_kg`) every array and string table is memory-mapped, so a
    process pays for the pages it touches and shares them with the other processes of its node; only
    the relation names are Python lists. In memory (`KGBuilder.to_kg`) it holds plain lists and arrays."""

    path: Path | None
    keys: Sequence[str]
    labels: Sequence[str]
    relation_keys: list[str]
    relation_labels: list[str]
    heads: np.ndarray
    relations: np.ndarray
    tails: np.ndarray
    alias_lists: pa.ChunkedArray | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    key_order: np.ndarray | None = None   # ids in key order (for `id_of` on a mapped key table)
    mapped_adjacency: Adjacency | None = None

    @property
    def num_entities(self) -> int:
        return len(self.keys)

    @property
    def num_triples(self) -> int:
        return len(self.heads)

    @cached_property
    def aliases(self) -> pa.ChunkedArray | None:
        """The entities' alias lists (read from entities.parquet on first use; linking does not need it)."""
        if self.alias_lists is None and self.path is not None:
            return pq.read_table(self.path / ENTITIES, columns=["aliases"]).column("aliases")
        return self.alias_lists

    @cached_property
    def key_to_id(self) -> dict[str, int]:
        return {key: i for i, key in enumerate(self.keys)}

    @cached_property
    def relation_index(self) -> dict[str, int]:
        return {key: i for i, key in enumerate(self.relation_keys)}

    @cached_property
    def adjacency(self) -> Adjacency:
        if self.mapped_adjacency is not None:
            return self.mapped_adjacency
        return Adjacency.from_triples(self.heads, self.tails, self.num_entities)

    @cached_property
    def alias_index(self):  # noqa: ANN201 (AliasIndex; imported lazily, alias.py imports link.normalize)
        from kale_ray.kg.alias import AliasIndex, name_rows

        if self.path is not None and (self.path / ARRAYS / "alias_ptr.npy").is_file():
            return AliasIndex.load(self.path / ARRAYS, int(self.manifest.get("extra", {}).get("alias_max_tokens", 1)))
        aliases = self.aliases.to_pylist() if self.aliases is not None else [[] for _ in range(self.num_entities)]
        return AliasIndex.build(name_rows(np.arange(self.num_entities), list(self.keys), list(self.labels), aliases),
                                self.adjacency.degree)

    def id_of(self, key: str) -> int | None:
        if isinstance(self.keys, StringTable):
            pos = self.keys.index_sorted(key, self.key_order)
            if pos < 0:
                return None
            return int(self.key_order[pos]) if self.key_order is not None else pos
        return self.key_to_id.get(key)

    def triple_keys(self, edge: int) -> tuple[str, str, str]:
        return (self.keys[int(self.heads[edge])], self.relation_keys[int(self.relations[edge])],
                self.keys[int(self.tails[edge])])

    def networkit_graph(self, undirected: bool = False) -> Any:
        """The KG as a networkit graph: the directed multigraph, or its simple undirected view."""
        import networkit as nk

        heads, tails = np.asarray(self.heads, np.int64), np.asarray(self.tails, np.int64)
        graph = nk.GraphFromCoo((heads, tails), n=self.num_entities, directed=not undirected) if len(heads) \
            else nk.Graph(self.num_entities, directed=not undirected)
        if undirected:
            graph.removeMultiEdges()
            graph.removeSelfLoops()
        return graph


def load_kg(path: Path, check_graph: bool = True) -> KG:
    """Map a KG artifact: the arrays zero-copy from disk, the relation tables into lists. With
    `check_graph`, the arrays must agree with the Parquet tables (sizes; cheap at any scale)."""
    path = Path(path)
    storage.fetch(path)  # an object-store workdir: once per node, then every actor maps the same files
    for name in (ENTITIES, RELATIONS, TRIPLES):
        if not (path / name).is_file():
            raise KGError(f"{path} is not a KG artifact: {name} is missing (build one with `kale-ray kg build`)")
    arrays = path / ARRAYS
    manifest = Manifest.read(path)
    extra = (manifest.extra if manifest else {}) or {}
    if not (arrays / "indptr.npy").is_file() or extra.get("layout") != LAYOUT:
        raise KGError(f"{path} was built by an older kale-ray (no memory-mapped arrays): rebuild it with "
                      "`kale-ray kg build --force`")
    relations = pq.read_table(path / RELATIONS, columns=["key", "label"])
    keys = StringTable.load(arrays, "key")
    kg = KG(path=path, keys=keys, labels=StringTable.load(arrays, "label"),
            relation_keys=relations.column("key").to_pylist(), relation_labels=relations.column("label").to_pylist(),
            heads=load_array(arrays / "heads.npy"), relations=load_array(arrays / "relations.npy"),
            tails=load_array(arrays / "tails.npy"), manifest=manifest.__dict__ if manifest else {},
            key_order=None if extra.get("keys_sorted") else load_array(arrays / "key_order.npy"),
            mapped_adjacency=Adjacency.load(arrays))
    if check_graph:
        n_entities = pq.ParquetFile(path / ENTITIES).metadata.num_rows
        n_triples = pq.ParquetFile(path / TRIPLES).metadata.num_rows
        adj = kg.mapped_adjacency
        if (n_entities, n_triples) != (kg.num_entities, kg.num_triples) or len(adj.indptr) != n_entities + 1 \
                or len(kg.relations) != n_triples or len(kg.tails) != n_triples:
            raise KGError(f"{path}: the arrays hold {kg.num_entities} entities / {kg.num_triples} triples but the "
                          f"tables have {n_entities} / {n_triples}: rebuild the KG")
    return kg
