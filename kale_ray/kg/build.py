"""The dump-scale KG build: parsed shards -> the KG artifact, by Ray tasks of bounded memory.

A source's parser (on Ray Data, `sources/wikidata.py`) writes *shards*: per block of input lines an
entity Parquet file (key, label, aliases, description) and an edge Parquet file (head, rel, tail keys),
and hands the driver one small summary row per shard. From there every step is a Ray task that holds one
shard or one bucket, never the whole graph; the driver only sums counts and picks split points:

1. keys: each shard's keys (its entities and its edges' tails) are range-partitioned by sampled split
   keys; each bucket is sorted and de-duplicated in Arrow (`sort_by`, `is_in` within the bucket), so an
   entity's id is its rank in the global sorted key table, and no process builds a key -> id dict;
2. strings: each bucket writes its keys and labels into the mapped string tables at its offset;
3. edges: each shard joins its keys to ids by binary search in the mapped sorted key table (numba,
   `arrays.find_many`), writes heads/relations/tails at its edge offset and scatters the undirected
   view's entries into node-range buckets;
4. CSR: each node range is sorted and de-duplicated exactly as `Adjacency.from_triples` does and
   written at its offset of `indptr`/`nbr`/`edge`/`back`;
5. alias index: (normalised name, entity) rows are range-partitioned by name, ranked per bucket
   (`AliasIndex.build`) and concatenated;
6. the Parquet tables are streamed out bucket by bucket, then the manifest.

Tasks of step k write disjoint slices of preallocated `.npy` files, so the output directory must be on a
filesystem every node of the cluster sees (on one node, the local disk).
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kale_ray.kg.arrays import (
    ARRAYS,
    StringTable,
    arrow_strings,
    create_array,
    fill_array,
    load_array,
    unique_edges,
)

ENTITY_SHARD = pa.schema([("key", pa.string()), ("label", pa.string()), ("aliases", pa.list_(pa.string())),
                          ("description", pa.string())])
EDGE_SHARD = pa.schema([("head", pa.string()), ("rel", pa.string()), ("tail", pa.string())])
SAMPLE = 64  # split-key candidates each shard or bucket reports


@dataclass
class BuildLimits:
    """How much one task holds: input lines per parse shard, keys / names / CSR entries per bucket."""

    shard_lines: int = 100_000
    bucket_rows: int = 2_000_000


@dataclass
class ShardSummary:
    """What a parse task tells the driver about the shard it wrote (small, whatever the shard's size)."""

    path: str
    entities: int
    edges: int
    properties: dict[str, str | None]
    relations: list[str]
    sample: list[str]
    skipped: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def row(self) -> dict[str, list[Any]]:
        return {"summary": [json.dumps(self.__dict__)]}

    @classmethod
    def from_row(cls, text: str) -> ShardSummary:
        return cls(**json.loads(text))


def write_shard(directory: Path, name: str, entities: pa.Table, edges: pa.Table, **summary: Any) -> ShardSummary:
    """Write one shard's two files and describe it (its split-key sample included)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(entities, directory / f"{name}.ent.parquet")
    pq.write_table(edges, directory / f"{name}.edge.parquet")
    keys = pc.unique(pa.concat_arrays([entities.column("key").combine_chunks().cast(pa.string()),
                                       edges.column("head").combine_chunks().cast(pa.string()),
                                       edges.column("tail").combine_chunks().cast(pa.string())]))
    keys = keys.take(pc.sort_indices(keys))
    step = max(1, len(keys) // SAMPLE)
    return ShardSummary(path=str(directory / name), entities=entities.num_rows, edges=edges.num_rows,
                        relations=sorted(set(edges.column("rel").to_pylist())),
                        sample=keys[::step].to_pylist() if len(keys) else [], **summary)


def splitters(samples: list[str], buckets: int) -> list[str]:
    """buckets - 1 split keys from the pooled samples: bucket b holds keys in [s[b-1], s[b])."""
    pool = sorted(set(samples))
    if buckets <= 1 or len(pool) < 2:
        return []
    picks = [pool[(i * len(pool)) // buckets] for i in range(1, buckets)]
    return sorted(set(picks))


def bucket_of(values: pa.Array | pa.ChunkedArray, splits: list[str]) -> np.ndarray:
    """The range bucket of every string (a vectorised comparison per split key)."""
    out = np.zeros(len(values), np.int32)
    for s in splits:
        out += pc.greater_equal(values, pa.scalar(s, values.type)).to_numpy(zero_copy_only=False).astype(np.int32)
    return out


def _write_parts(table: pa.Table, buckets: np.ndarray, prefix: Path, suffix: str) -> None:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    order = np.argsort(buckets, kind="stable")
    sorted_b = buckets[order]
    for b in np.unique(sorted_b):
        lo, hi = np.searchsorted(sorted_b, b), np.searchsorted(sorted_b, b, side="right")
        pq.write_table(table.take(pa.array(order[lo:hi])), f"{prefix}{int(b):05d}-{suffix}.parquet")


# -- tasks (plain functions; `_remote` runs them as Ray tasks) ------------------------------------------------

def partition_keys(shard: str, index: int, splits: list[str], work: str) -> None:
    """Step 1a: one shard's entity rows and edge keys, split into key-range buckets."""
    ents = pq.read_table(f"{shard}.ent.parquet")
    edges = pq.read_table(f"{shard}.edge.parquet", columns=["head", "tail"])
    counted = pc.value_counts(edges.column("tail"))
    heads = pc.unique(edges.column("head"))
    tails = pa.concat_arrays([counted.field("values").cast(pa.string()), heads.cast(pa.string())])
    uses = pa.concat_arrays([counted.field("counts").cast(pa.int64()), pa.array(np.zeros(len(heads), np.int64))])
    ents = ents.append_column("dangling", pa.array(np.zeros(ents.num_rows, bool)))
    ents = ents.append_column("uses", pa.array(np.zeros(ents.num_rows, np.int64)))
    extra = pa.table({"key": tails.cast(pa.string()), "label": pa.nulls(len(tails), pa.string()),
                      "aliases": pa.nulls(len(tails), pa.list_(pa.string())),
                      "description": pa.nulls(len(tails), pa.string()),
                      "dangling": pa.array(np.ones(len(tails), bool)), "uses": uses})
    rows = pa.concat_tables([ents.cast(extra.schema), extra])
    _write_parts(rows, bucket_of(rows.column("key"), splits), Path(work) / "keys_in" / "b", f"{index:06d}")


def key_bucket(b: int, work: str) -> dict[str, int]:
    """Step 1b: one key range, sorted; the first row of a key wins, tails without an entity row get
    their key as label (as `KGBuilder` does)."""
    parts = sorted((Path(work) / "keys_in").glob(f"b{b:05d}-*.parquet"))
    rows = pa.concat_tables([pq.read_table(p) for p in parts]) if parts else None
    if rows is None or rows.num_rows == 0:
        table = pa.table({name: pa.array([], t) for name, t in zip(ENTITY_SHARD.names, ENTITY_SHARD.types,
                                                                       strict=True)})
        duplicates = dangling_edges = 0
    else:
        # Entity rows before dangling tails, then input order: the stable sort keeps the first row per key.
        rows = rows.append_column("seq", pa.array(np.arange(rows.num_rows)))
        rows = rows.sort_by([("key", "ascending"), ("dangling", "ascending"), ("seq", "ascending")])
        key = rows.column("key").combine_chunks()
        first = np.ones(len(key), bool)
        if len(key) > 1:
            first[1:] = pc.not_equal(key.slice(1), key.slice(0, len(key) - 1)).to_numpy(zero_copy_only=False)
        dangling = rows.column("dangling").to_numpy(zero_copy_only=False)
        duplicates = int((~first & ~dangling).sum())
        group = np.cumsum(first) - 1
        uses = np.bincount(group, weights=rows.column("uses").to_numpy(), minlength=int(first.sum()))
        dangling_edges = int(uses[dangling[first]].sum())
        rows = rows.filter(pa.array(first))
        table = pa.table({"key": rows.column("key"), "label": pc.coalesce(rows.column("label"), rows.column("key")),
                          "aliases": pc.fill_null(rows.column("aliases"), pa.scalar([], pa.list_(pa.string()))),
                          "description": rows.column("description")}, schema=ENTITY_SHARD)
    out = Path(work) / "keys" / f"b{b:05d}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return {"rows": table.num_rows, "key_bytes": int(pc.sum(pc.binary_length(table.column("key"))).as_py() or 0),
            "label_bytes": int(pc.sum(pc.binary_length(table.column("label"))).as_py() or 0),
            "duplicates": duplicates, "dangling_edges": dangling_edges}


def key_strings(b: int, work: str, arrays: str, id_offset: int, key_offset: int, label_offset: int,
                n: int) -> list[str]:
    """Step 2: the bucket's keys and labels into the global string tables; its (name, entity) rows for
    the alias index; returns a sample of its names (split points for step 5)."""
    from kale_ray.kg.alias import name_rows

    table = pq.read_table(Path(work) / "keys" / f"b{b:05d}.parquet")
    for name, column, byte_offset in (("key", "key", key_offset), ("label", "label", label_offset)):
        off, data = arrow_strings(table.column(column))
        fill_array(Path(arrays) / f"{name}.off.npy", id_offset + 1, off[1:] + byte_offset)
        fill_array(Path(arrays) / f"{name}.bytes.npy", byte_offset, data)
    ids = np.arange(id_offset, id_offset + table.num_rows, dtype=np.int64)
    names = name_rows(ids, table.column("key").to_pylist(), table.column("label").to_pylist(),
                      table.column("aliases").to_pylist())
    out = Path(work) / "names" / f"k{b:05d}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(names, out)
    norms = pc.unique(names.column("norm").combine_chunks())
    norms = norms.take(pc.sort_indices(norms))
    step = max(1, len(norms) // SAMPLE)
    return norms[::step].to_pylist()


def map_edges(shard: str, index: int, edge_offset: int, arrays: str, work: str, relation_keys: list[str],
              span: int) -> dict[str, int]:
    """Step 3: one shard's edges as ids, written at its offset, and scattered into node-range buckets."""
    edges = pq.read_table(f"{shard}.edge.parquet")
    keys = StringTable.load(Path(arrays), "key")
    heads = keys.lookup_many(edges.column("head"))
    tails = keys.lookup_many(edges.column("tail"))
    if len(heads) and (heads.min() < 0 or tails.min() < 0):
        raise RuntimeError(f"{shard}: an edge key is missing from the key table (build bug)")
    rels = pc.index_in(edges.column("rel"), value_set=pa.array(relation_keys, pa.string())).to_numpy(
        zero_copy_only=False).astype(np.int32)
    for name, values in (("heads", heads), ("relations", rels), ("tails", tails)):
        fill_array(Path(arrays) / f"{name}.npy", edge_offset, values)
    m = len(heads)
    eid = np.arange(edge_offset, edge_offset + m, dtype=np.int64)
    src, dst = np.concatenate([heads, tails]), np.concatenate([tails, heads])
    entries = pa.table({"src": src, "dst": dst, "eid": np.concatenate([eid, eid]),
                        "back": np.concatenate([np.zeros(m, bool), np.ones(m, bool)])})
    if m:
        _write_parts(entries, (src // span).astype(np.int32), Path(work) / "csr_in" / "c", f"{index:06d}")
    return {"self_loops": int((heads == tails).sum())}


def csr_bucket(b: int, work: str, span: int, n: int) -> dict[str, int]:
    """Step 4a: one node range's entries, sorted and de-duplicated as `Adjacency.from_triples` does."""
    lo, hi = b * span, min(n, (b + 1) * span)
    parts = sorted((Path(work) / "csr_in").glob(f"c{b:05d}-*.parquet"))
    t = pa.concat_tables([pq.read_table(p) for p in parts]) if parts else None
    src = t.column("src").to_numpy() if t is not None else np.zeros(0, np.int64)
    dst = t.column("dst").to_numpy() if t is not None else np.zeros(0, np.int64)
    ids = t.column("eid").to_numpy() if t is not None else np.zeros(0, np.int64)
    back = t.column("back").to_numpy(zero_copy_only=False) if t is not None else np.zeros(0, bool)
    multi = np.bincount(src - lo, minlength=hi - lo)
    src, dst, ids, back = unique_edges(src, dst, ids, back)
    out = Path(work) / "csr_out"
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / f"c{b:05d}.npz", deg=np.bincount(src - lo, minlength=hi - lo), nbr=dst, edge=ids, back=back)
    return {"entries": int(len(src)), "isolated": int((multi == 0).sum()),
            "max_degree": int(multi.max()) if len(multi) else 0}


def csr_fill(b: int, work: str, arrays: str, span: int, entry_offset: int) -> None:
    """Step 4b: the node range's CSR slice into the global arrays."""
    with np.load(Path(work) / "csr_out" / f"c{b:05d}.npz") as z:
        deg, nbr, edge, back = z["deg"], z["nbr"], z["edge"], z["back"]
    a = Path(arrays)
    fill_array(a / "indptr.npy", b * span + 1, entry_offset + np.cumsum(deg))
    fill_array(a / "nbr.npy", entry_offset, nbr)
    fill_array(a / "edge.npy", entry_offset, edge)
    fill_array(a / "back.npy", entry_offset, back)


def partition_names(k: int, work: str, arrays: str, splits: list[str]) -> None:
    """Step 5a: one key bucket's name rows, with each entity's degree, split into name-range buckets."""
    rows = pq.read_table(Path(work) / "names" / f"k{k:05d}.parquet")
    indptr = load_array(Path(arrays) / "indptr.npy")
    eid = rows.column("eid").to_numpy()
    rows = rows.append_column("degree", pa.array((indptr[eid + 1] - indptr[eid]).astype(np.int64)))
    if rows.num_rows:
        _write_parts(rows, bucket_of(rows.column("norm"), splits), Path(work) / "names_in" / "n", f"{k:06d}")


def name_bucket(b: int, work: str) -> dict[str, int]:
    """Step 5b: one name range ranked into an alias index slice."""
    from kale_ray.kg.alias import NAME_SCHEMA, AliasIndex

    parts = sorted((Path(work) / "names_in").glob(f"n{b:05d}-*.parquet"))
    rows = pa.concat_tables([pq.read_table(p) for p in parts]) if parts else \
        NAME_SCHEMA.append(pa.field("degree", pa.int64())).empty_table()
    index = AliasIndex.build(rows, None)
    out = Path(work) / "alias_out" / f"n{b:05d}"
    out.mkdir(parents=True, exist_ok=True)
    index.save(out)
    return {"names": len(index), "name_bytes": int(len(index.names.data)), "ids": int(len(index.ids)),
            "max_tokens": index.max_tokens}


def alias_fill(b: int, work: str, arrays: str, name_offset: int, byte_offset: int, id_offset: int) -> None:
    from kale_ray.kg.alias import AliasIndex

    part = AliasIndex.load(Path(work) / "alias_out" / f"n{b:05d}", 1)
    a = Path(arrays)
    fill_array(a / "alias.off.npy", name_offset + 1, part.names.off[1:] + byte_offset)
    fill_array(a / "alias.bytes.npy", byte_offset, part.names.data)
    fill_array(a / "alias_ptr.npy", name_offset + 1, part.ptr[1:] + id_offset)
    fill_array(a / "alias_ids.npy", id_offset, part.ids)


def write_entities(work: str, out: str, buckets: int) -> None:
    """Step 6: entities.parquet, one row group per key bucket, ids counted along."""
    from kale_ray.kg.store import ENTITY_SCHEMA

    tmp = Path(out) / ".entities.parquet.tmp"
    next_id = 0
    with pq.ParquetWriter(tmp, ENTITY_SCHEMA) as writer:
        for b in range(buckets):
            t = pq.read_table(Path(work) / "keys" / f"b{b:05d}.parquet")
            ids = pa.array(np.arange(next_id, next_id + t.num_rows, dtype=np.int64))
            writer.write_table(pa.table([ids, *t.columns], schema=ENTITY_SCHEMA))
            next_id += t.num_rows
    tmp.replace(Path(out) / "entities.parquet")


def write_triples(arrays: str, out: str, chunk: int = 4_000_000) -> None:
    from kale_ray.kg.store import TRIPLE_SCHEMA

    a = Path(arrays)
    heads, rels, tails = (load_array(a / f"{name}.npy") for name in ("heads", "relations", "tails"))
    tmp = Path(out) / ".triples.parquet.tmp"
    with pq.ParquetWriter(tmp, TRIPLE_SCHEMA) as writer:
        for lo in range(0, max(len(heads), 1), chunk):
            writer.write_table(pa.table({"head": heads[lo: lo + chunk], "relation": rels[lo: lo + chunk],
                                         "tail": tails[lo: lo + chunk]}, schema=TRIPLE_SCHEMA))
    tmp.replace(Path(out) / "triples.parquet")


# -- the driver ---------------------------------------------------------------------------------------------

def _remote(fn: Callable[..., Any], calls: list[tuple], **options: Any) -> list[Any]:
    """Run fn(*args) for every args as Ray tasks (1 CPU each by default); results in call order. Without
    a Ray cluster (unit tests, a small KG assembled in one process) the calls run here, one by one."""
    import ray

    if not ray.is_initialized():
        return [fn(*args) for args in calls]

    from kale_ray.ray_utils import task_placement

    task = ray.remote(num_cpus=options.pop("num_cpus", 1), max_retries=2, **task_placement(), **options)(fn)
    return ray.get([task.remote(*args) for args in calls])


@dataclass
class BuildReport:
    """Seconds per step, for the manifest and `bench/kg_scale.py`."""

    seconds: dict[str, float] = field(default_factory=dict)
    _t: float = field(default_factory=time.monotonic)

    def lap(self, step: str) -> None:
        now = time.monotonic()
        self.seconds[step] = round(now - self._t, 3)
        self._t = now


def assemble(summaries: list[ShardSummary], out: Path, *, config_hash: str, source: str, inputs: dict[str, Any],
             limits: BuildLimits, report: BuildReport, relation_label: Callable[[str], str] | None = None,
             relation_names: dict[str, str] | None = None, info: dict[str, Any] | None = None,
             on_step: Callable[[str], None] | None = None, skipped_before: dict[str, Any] | None = None) -> Path:
    """Steps 1-6 over the parsed shards in `out/.build/parsed`; writes the artifact into `out`."""
    from kale_ray.kg.store import RELATION_SCHEMA, write_manifest

    def step(name: str) -> None:
        report.lap(name)
        if on_step:
            on_step(name)

    out = Path(out)
    work = out / ".build"
    arrays = out / ARRAYS
    arrays.mkdir(parents=True, exist_ok=True)
    w, a = str(work), str(arrays)

    # 1. keys
    est_keys = sum(len(s.sample) and s.entities + s.edges for s in summaries)
    n_buckets = max(1, -(-est_keys // limits.bucket_rows))
    splits = splitters([k for s in summaries for k in s.sample], n_buckets)
    n_buckets = len(splits) + 1
    _remote(partition_keys, [(s.path, i, splits, w) for i, s in enumerate(summaries)])
    buckets = _remote(key_bucket, [(b, w) for b in range(n_buckets)])
    n = sum(b["rows"] for b in buckets)
    step("ids")

    # 2. strings
    for name, key in (("key", "key_bytes"), ("label", "label_bytes")):
        create_array(arrays / f"{name}.off.npy", np.int64, n + 1)
        create_array(arrays / f"{name}.bytes.npy", np.uint8, sum(b[key] for b in buckets))
    id_off = np.concatenate([[0], np.cumsum([b["rows"] for b in buckets])]).tolist()
    key_off = np.concatenate([[0], np.cumsum([b["key_bytes"] for b in buckets])]).tolist()
    label_off = np.concatenate([[0], np.cumsum([b["label_bytes"] for b in buckets])]).tolist()
    name_samples = _remote(key_strings, [(b, w, a, id_off[b], key_off[b], label_off[b], n) for b in range(n_buckets)])
    step("strings")

    # 3. relations and edges
    properties: dict[str, str | None] = dict(relation_names or {})
    for s in summaries:
        for key, label in s.properties.items():
            properties.setdefault(key, label)
    relation_keys = sorted({r for s in summaries for r in s.relations} | set(properties))
    label_of = relation_label or (lambda key: key.replace("_", " "))
    relations = pa.table({"id": pa.array(np.arange(len(relation_keys), dtype=np.int32)),
                          "key": pa.array(relation_keys, pa.string()),
                          "label": pa.array([properties.get(k) or label_of(k) for k in relation_keys], pa.string())},
                         schema=RELATION_SCHEMA)
    m = sum(s.edges for s in summaries)
    for name, dtype in (("heads", np.int64), ("relations", np.int32), ("tails", np.int64)):
        create_array(arrays / f"{name}.npy", dtype, m)
    edge_off = np.concatenate([[0], np.cumsum([s.edges for s in summaries])]).tolist()
    n_csr = max(1, -(-2 * m // limits.bucket_rows))
    span = max(1, -(-n // n_csr))
    n_csr = max(1, -(-n // span))
    mapped = _remote(map_edges, [(s.path, i, edge_off[i], a, w, relation_keys, span) for i, s in enumerate(summaries)])
    step("edges")

    # 4. CSR
    csr = _remote(csr_bucket, [(b, w, span, n) for b in range(n_csr)])
    entries = np.concatenate([[0], np.cumsum([c["entries"] for c in csr])]).tolist()
    create_array(arrays / "indptr.npy", np.int64, n + 1)
    create_array(arrays / "nbr.npy", np.int32 if n < 2**31 else np.int64, entries[-1])
    create_array(arrays / "edge.npy", np.int64, entries[-1])
    create_array(arrays / "back.npy", np.bool_, entries[-1])
    _remote(csr_fill, [(b, w, a, span, entries[b]) for b in range(n_csr)])
    step("csr")

    # 5. alias index
    est_names = sum(len(x) for x in name_samples)
    n_names = max(1, -(-n * 3 // limits.bucket_rows)) if est_names else 1
    name_splits = splitters([x for xs in name_samples for x in xs], n_names)
    _remote(partition_names, [(k, w, a, name_splits) for k in range(n_buckets)])
    parts = _remote(name_bucket, [(b, w) for b in range(len(name_splits) + 1)])
    name_off = np.concatenate([[0], np.cumsum([p["names"] for p in parts])]).tolist()
    byte_off = np.concatenate([[0], np.cumsum([p["name_bytes"] for p in parts])]).tolist()
    ids_off = np.concatenate([[0], np.cumsum([p["ids"] for p in parts])]).tolist()
    create_array(arrays / "alias.off.npy", np.int64, name_off[-1] + 1)
    create_array(arrays / "alias.bytes.npy", np.uint8, byte_off[-1])
    create_array(arrays / "alias_ptr.npy", np.int64, name_off[-1] + 1)
    create_array(arrays / "alias_ids.npy", np.int64, ids_off[-1])
    _remote(alias_fill, [(b, w, a, name_off[b], byte_off[b], ids_off[b]) for b in range(len(parts))])
    step("alias")

    # 6. tables and manifest
    from kale_ray.artifacts import atomic_write_parquet

    atomic_write_parquet(out / "relations.parquet", relations)
    _remote(lambda kind: write_entities(w, str(out), n_buckets) if kind == "e" else write_triples(a, str(out)),
            [("e",), ("t",)])
    skipped: Counter[str] = Counter((skipped_before or {}).get("reasons", {}))
    examples: list[str] = list((skipped_before or {}).get("examples", []))
    for s in summaries:
        skipped.update(s.skipped)
        examples.extend(s.examples[: max(0, 20 - len(examples))])
    extra_counts: Counter[str] = Counter()
    for s in summaries:
        extra_counts.update(s.counts)
    counts = {"entities": n, "relations": len(relation_keys), "triples": m,
              "self_loops": sum(x["self_loops"] for x in mapped), "isolated_entities": sum(c["isolated"] for c in csr),
              "skipped": sum(skipped.values())}
    shutil.rmtree(work, ignore_errors=True)
    step("tables")
    write_manifest(out, config_hash=config_hash, source=source, inputs=inputs, counts=counts,
                   extra={"skipped": {"skipped": counts["skipped"], "reasons": dict(skipped), "examples": examples},
                          "max_degree": max((c["max_degree"] for c in csr), default=0),
                          "alias_names": name_off[-1], "alias_max_tokens": max((p["max_tokens"] for p in parts),
                                                                                default=1),
                          "keys_sorted": True, "source_info": {**(info or {}), **dict(extra_counts),
                                                               "tails_without_entity": sum(b["dangling_edges"]
                                                                                           for b in buckets)},
                          "build": {"shards": len(summaries), "key_buckets": n_buckets, "csr_buckets": n_csr,
                                    "name_buckets": len(parts), "shard_lines": limits.shard_lines,
                                    "bucket_rows": limits.bucket_rows, "seconds": dict(report.seconds)}})
    return out


def read_lines(paths: Path | list[Path], chunk_bytes: int = 16 * 1024**2):  # noqa: ANN201 (ray.data.Dataset)
    """A Ray Data dataset of text files' lines (column `text`), file after file, that streams:
    `ray.data.read_text` reads each file whole into one task's memory (a decompressed dump is hundreds of GB); this reads
    `chunk_bytes` at a time and yields a block per chunk, so a read task holds one chunk and one line."""
    import ray.data
    from ray.data.datasource import FileBasedDatasource

    class LinesDatasource(FileBasedDatasource):
        def _read_stream(self, f, path: str):  # noqa: ANN001, ANN202
            rest = b""
            while True:
                data = f.read(chunk_bytes)
                if not data:
                    break
                data = rest + data
                cut = data.rfind(b"\n")
                if cut < 0:
                    rest = data
                    continue
                rest = data[cut + 1:]
                yield pa.table({"text": pa.array(data[:cut].decode("utf-8").splitlines(), pa.string())})
            if rest:
                yield pa.table({"text": pa.array(rest.decode("utf-8").splitlines(), pa.string())})

    files = [str(p) for p in paths] if isinstance(paths, list) else str(paths)
    return ray.data.read_datasource(LinesDatasource(files))
