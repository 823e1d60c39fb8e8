"""The paths stage on Ray Data: QA rows -> linked entities -> multi-path A* -> verbalised paths.

`map_batches` runs over an actor pool (`ActorPoolStrategy(size=paths.workers)`) with fractional CPUs;
each actor loads the KG artifact from its directory once (not a pickled graph: pickling a networkit
graph drops attributes, and shipping a path keeps the task payload small). Actors restart when they
die and their in-flight batch is retried (`max_restarts`, `max_task_retries`), so a killed worker loses
nothing. The driver writes each finished block as a numbered Parquet part, atomically; a re-run reads
the ids already written and sends only the missing rows, so rows are never duplicated or lost. A row
whose processing fails gets `path_status="error"` and the message in `path_error`; the job goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kale_ray.artifacts import (
    Manifest,
    atomic_write_parquet,
    existing_parts,
    part_path,
    pending_rows,
    recorded_nodes,
)
from kale_ray.progress import Progress
from kale_ray.ray_utils import with_node

EXTRA_FIELDS = [
    pa.field("q_entities", pa.list_(pa.string())),
    pa.field("a_entities", pa.list_(pa.string())),
    pa.field("paths", pa.string()),
    pa.field("path_texts", pa.list_(pa.string())),
    pa.field("path_status", pa.string()),
    pa.field("path_error", pa.string()),
    pa.field("nodes_expanded", pa.int64()),
    pa.field("search_seconds", pa.float64()),
]
EXECUTION_KEYS = ("workers", "worker_cpus", "batch_size")
STATUSES = ("ok", "no_question_entity", "no_answer_entity", "no_path", "error")


class RowPathFinder:
    """Links one row's question and answer and searches paths between every (q, a) pair."""

    def __init__(self, kg, kg_cfg: dict[str, Any], paths_cfg: dict[str, Any], seed: int) -> None:  # noqa: ANN001
        from kale_ray.kg.link import Linker
        from kale_ray.kg.paths import PathSearcher, SearchLimits

        self.kg = kg
        self.cfg = paths_cfg
        self.linker = Linker(kg, kg_cfg["max_entity_degree_share"], kg_cfg["min_hub_degree"],
                             kg_cfg["link_candidates"])
        limits = SearchLimits(max_paths=paths_cfg["max_paths"], max_hops=paths_cfg["max_hops"],
                              anchors=paths_cfg["anchors"], anchor_hops=paths_cfg["anchor_hops"],
                              anchor_depth=paths_cfg["anchor_depth"], max_expansions=paths_cfg["max_expansions"],
                              seed=seed, heuristic=paths_cfg["heuristic"],
                              max_degree_through=paths_cfg["max_degree_through"])
        self.searcher = PathSearcher(kg.adjacency, limits)

    def process(self, row: dict[str, Any]) -> dict[str, Any]:
        return self.process_batch([row])[0]

    def process_batch(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Links every row, then searches all the batch's entity pairs in one `search_many` call (one
        compiled call instead of one per pair: most of a search that finds nothing is the call itself),
        then assembles each row. Should the batched search fail, the rows are searched one by one, so
        the error lands on the row it belongs to."""
        outs = [{"q_entities": [], "a_entities": [], "paths": "[]", "path_texts": [], "path_status": "error",
                 "path_error": None, "nodes_expanded": 0, "search_seconds": 0.0} for _ in rows]
        linked: list[tuple[int, list[tuple[int, int]]]] = []
        for i, row in enumerate(rows):
            with _row_errors(outs[i]):
                pairs = self._link(row, outs[i])
                if pairs is not None:
                    linked.append((i, pairs))
        flat = [pair for _, pairs in linked for pair in pairs]
        batch = None
        if flat:
            try:
                batch = self.searcher.search_many([s for s, _ in flat], [t for _, t in flat])
            except Exception:  # noqa: BLE001 - searched again row by row below, which records the error
                batch = None
        k = 0
        for i, pairs in linked:
            with _row_errors(outs[i]):
                results = (batch[k: k + len(pairs)] if batch is not None
                           else [self.searcher.search(s, t) for s, t in pairs])
                self._assemble(results, outs[i])
            k += len(pairs)
        return outs

    def _link(self, row: dict[str, Any], out: dict[str, Any]) -> list[tuple[int, int]] | None:
        """The row's (question entity, answer entity) pairs to search, or None with the status set."""
        kg = self.kg
        q_ids = self.linker.link_question(row["question"], row.get("topic"))
        answers = [a for a in (row.get("answers") or []) if a] or [row["gold_text"]]
        a_ids: dict[int, None] = {}
        for answer in answers:
            for eid in self.linker.link_answer(answer):
                a_ids.setdefault(eid, None)
        out["q_entities"] = [kg.keys[e] for e in q_ids]
        out["a_entities"] = [kg.keys[e] for e in a_ids]
        if not q_ids:
            out["path_status"] = "no_question_entity"
            return None
        if not a_ids:
            out["path_status"] = "no_answer_entity"
            return None
        return [(s, t) for s in q_ids for t in a_ids if s != t][: self.cfg["max_pairs_per_row"]]

    def _assemble(self, results: list[Any], out: dict[str, Any]) -> None:  # results: list[SearchResult]
        from kale_ray.kg.verbalize import path_triples, verbalize_path

        kg = self.kg
        found: list[list[list[Any]]] = []
        for result in results:
            out["nodes_expanded"] += result.nodes_expanded
            out["search_seconds"] += result.seconds
            found.extend(path_triples(kg, result))
        found.sort(key=len)  # stable: pairs keep their order among equal lengths
        found = found[: self.cfg["max_paths_per_row"]]
        out["paths"] = json.dumps(found)
        out["path_texts"] = [verbalize_path(kg, p) for p in found]
        out["path_status"] = "ok" if found else "no_path"


@contextmanager
def _row_errors(out: dict[str, Any]) -> Iterator[None]:
    """A bad row is recorded (status "error" and the message), never a crashed job."""
    try:
        yield
    except Exception as err:  # noqa: BLE001
        out["path_status"], out["path_error"] = "error", f"{type(err).__name__}: {err}"


class PathsActor:
    """One Ray Data actor: loads the KG once, then maps batches of rows."""

    def __init__(self, kg_dir: str, kg_cfg: dict[str, Any], paths_cfg: dict[str, Any], seed: int) -> None:
        from kale_ray.kg.store import load_kg

        t0 = time.monotonic()
        self.finder = RowPathFinder(load_kg(Path(kg_dir)), kg_cfg, paths_cfg, seed)
        print(f"paths actor {os.getpid()}: KG loaded in {time.monotonic() - t0:.1f}s", flush=True)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return with_node(add_path_columns(batch, self.finder.process_batch(batch.to_pylist())))


def add_path_columns(batch: pa.Table, results: list[dict[str, Any]]) -> pa.Table:
    for f in EXTRA_FIELDS:
        batch = batch.append_column(f, pa.array([r[f.name] for r in results], f.type))
    return batch


def stage_hash(cfg, rows: pa.Table, kg_dir: Path) -> str:  # noqa: ANN001 (KaleConfig)
    kg_manifest = Manifest.read(kg_dir)
    ids = hashlib.sha256("\n".join(sorted(rows.column("id").to_pylist())).encode()).hexdigest()
    # How the work is spread (workers, CPUs, batch size) does not change a row's result: a re-run with
    # another pool size resumes instead of starting over.
    search = cfg.paths.model_dump(mode="json", exclude=set(EXECUTION_KEYS))
    if search["max_degree_through"] is None:  # no cap searches as before the key existed: those runs resume
        del search["max_degree_through"]
    blob = json.dumps({"paths": search, "kg": cfg.kg.model_dump(mode="json"), "seed": cfg.seed,
                       "kg_artifact": kg_manifest.config_hash if kg_manifest else str(kg_dir), "ids": ids},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_paths_stage(cfg, rows: pa.Table, kg_dir: Path, out: Path) -> Path:  # noqa: ANN001 (KaleConfig)
    """Rows -> paths artifact in `out` (Parquet parts + manifest); resumable, skipped when complete."""
    kg_dir, out = Path(kg_dir), Path(out)
    kg_manifest = Manifest.read(kg_dir)  # the arrays themselves may be in the store only: the actors map them
    if kg_manifest is None or not kg_manifest.complete or "triples.parquet" not in kg_manifest.files:
        from kale_ray.config import ConfigError

        raise ConfigError(f"paths stage: {kg_dir} is not a KG artifact (run `kale-ray kg build` first)")
    unique = _unique_ids(rows)
    duplicates = rows.num_rows - unique.num_rows
    config_hash = stage_hash(cfg, unique, kg_dir)
    pending = pending_rows(out, "paths", config_hash, unique)
    if pending is None:
        return out
    t0 = time.monotonic()
    if pending.todo.num_rows:
        _run_actors(cfg, pending.todo, kg_dir, out, pending.next_part)
    return _finish(cfg, out, config_hash, unique.num_rows, duplicates, kg_dir, time.monotonic() - t0)


def _unique_ids(rows: pa.Table) -> pa.Table:
    ids = rows.column("id").to_pylist()
    first: dict[str, int] = {}
    for i, rid in enumerate(ids):
        first.setdefault(rid, i)
    return rows if len(first) == len(ids) else rows.take(sorted(first.values()))


def _run_actors(cfg, todo: pa.Table, kg_dir: Path, out: Path, next_index: int) -> None:  # noqa: ANN001
    import ray.data
    from ray.data import ActorPoolStrategy

    from kale_ray.ray_utils import init_ray

    init_ray(cfg.ray)
    size = cfg.paths.batch_size
    blocks = [todo.slice(i, size) for i in range(0, todo.num_rows, size)]
    ds = ray.data.from_arrow(blocks).map_batches(
        PathsActor, batch_size=size, batch_format="pyarrow",
        compute=ActorPoolStrategy(size=max(1, min(cfg.paths.workers, len(blocks)))), num_cpus=cfg.paths.worker_cpus,
        fn_constructor_kwargs={"kg_dir": str(kg_dir.resolve()), "kg_cfg": cfg.kg.model_dump(mode="json"),
                               "paths_cfg": cfg.paths.model_dump(mode="json"), "seed": cfg.seed})
    # Ray Data starts pool actors with max_restarts=-1 and max_task_retries=-1 (ActorPoolMapOperator), so a
    # dead actor is restarted and its in-flight batch retried; tests/ray/test_kg_stage.py kills one to hold it.
    progress = Progress("paths", todo.num_rows, metrics_path=out / "metrics.jsonl")
    for block in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        if block.num_rows == 0:
            continue
        atomic_write_parquet(part_path(out, next_index), block)
        next_index += 1
        statuses = Counter(block.column("path_status").to_pylist())
        progress.update(block.num_rows, paths_ok=statuses.get("ok", 0),
                        nodes_expanded=float(pc.sum(block.column("nodes_expanded")).as_py() or 0))
    progress.close()


def _finish(cfg, out: Path, config_hash: str, expected: int, duplicates: int, kg_dir: Path,  # noqa: ANN001
            seconds: float) -> Path:
    table = pa.concat_tables([pq.read_table(p, columns=["id", "benchmark", "q_entities", "a_entities",
                                                         "paths", "path_status", "nodes_expanded",
                                                         "search_seconds"])
                              for p in existing_parts(out).values()])
    if table.num_rows != expected or len(set(table.column("id").to_pylist())) != expected:
        raise RuntimeError(f"paths: {out} holds {table.num_rows} rows for {expected} input rows; "
                           "remove the directory and run again")
    status = Counter(table.column("path_status").to_pylist())
    n_paths = sum(len(json.loads(p)) for p in table.column("paths").to_pylist())
    q_linked = [len(q) > 0 for q in table.column("q_entities").to_pylist()]
    a_linked = [len(a) > 0 for a in table.column("a_entities").to_pylist()]
    coverage: dict[str, dict[str, float]] = {}
    for bench, q, a, st in zip(table.column("benchmark").to_pylist(), q_linked, a_linked,
                               table.column("path_status").to_pylist(), strict=True):
        c = coverage.setdefault(bench, {"rows": 0, "with_q_entity": 0, "with_a_entity": 0, "linked": 0,
                                        "with_path": 0})
        c["rows"] += 1
        c["with_q_entity"] += q
        c["with_a_entity"] += a
        c["linked"] += q and a
        c["with_path"] += st == "ok"
    for c in coverage.values():
        c["linked_share"] = round(c["linked"] / c["rows"], 4)
        c["path_share"] = round(c["with_path"] / c["rows"], 4)
    counts = {"rows": table.num_rows, "with_q_entity": sum(q_linked), "with_a_entity": sum(a_linked),
              "with_path": status.get("ok", 0), "paths": n_paths, "duplicate_input_ids": duplicates,
              **{s: status.get(s, 0) for s in STATUSES if s != "ok"},
              "nodes_expanded": int(pc.sum(table.column("nodes_expanded")).as_py() or 0)}
    Manifest(stage="paths", config_hash=config_hash,
             config={"paths": cfg.paths.model_dump(mode="json"), "kg": cfg.kg.model_dump(mode="json"),
                     "seed": cfg.seed},
             inputs={"kg_dir": str(kg_dir)}, counts=counts,
             extra={"linking_coverage": coverage, "seconds": round(seconds, 2),
                    "nodes": recorded_nodes(existing_parts(out).values()),
                    "search_seconds": float(pc.sum(table.column("search_seconds")).as_py() or 0.0)}
             ).write(out, hash_files=[p for p in sorted(out.glob("part-*.parquet"))])
    print(f"paths: {counts['rows']} rows, {counts['with_path']} with paths, {counts['no_path']} no path, "
          f"{counts['no_question_entity']} without question entity, {counts['no_answer_entity']} without "
          f"answer entity, {counts['error']} errors -> {out}", flush=True)
    for bench, c in coverage.items():
        print(f"paths: linking coverage {bench}: {c['linked_share']:.1%} of {c['rows']} rows "
              f"(question {c['with_q_entity']}, answer {c['with_a_entity']}), paths {c['path_share']:.1%}",
              flush=True)
    return out
