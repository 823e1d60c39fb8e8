"""The synth stage: a paths artifact in, a rationales artifact out (docs/stages/synth.md), resumable.

Progress is kept as numbered Parquet parts written atomically by the driver as rows come back from the
actor pool. A re-run reads the ids already written and sends only the others to the writers, so a
crashed driver or a killed actor loses at most the rows that were in flight, and never duplicates one.
A hidden `.config_hash` stamp says which config the parts belong to: parts of another config are
cleared rather than mixed in.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kale_ray import storage
from kale_ray.artifacts import (
    MANIFEST,
    Manifest,
    atomic_write_parquet,
    atomic_write_text,
    existing_parts,
    is_complete,
    part_path,
    read_parts,
    recorded_nodes,
)
from kale_ray.progress import Progress, format_seconds
from kale_ray.synth.rows import STATUSES, has_path

STAMP = ".config_hash"
REQUIRED = ("id", "question", "gold_text", "choices", "path_status", "path_texts")


class SynthInputError(ValueError):
    """The paths artifact cannot be used (missing or lacking columns)."""


def writer_seed(cfg: Any) -> int:
    return cfg.synth.seed if cfg.synth.seed is not None else cfg.seed


def writer_model(cfg: Any) -> str | None:
    """The checkpoint (hf, vllm: registered names are prepared once, in a Ray task) or served model name (openai)."""
    name = cfg.synth.model or cfg.model.name_or_path
    if cfg.synth.backend == "template":
        return None
    if cfg.synth.backend == "openai":
        return name
    from kale_ray.engines.registry import resolve_model_in_task

    return resolve_model_in_task(name, cfg.model.cache_dir, cfg.models_dir)


# Settings that change what is written. How it is run (workers, batch size, endpoint URL, retries,
# part size) may change between a crash and its re-run without invalidating the rows already written.
CONTENT_KEYS = ("backend", "model", "ki", "max_new_tokens", "temperature", "top_p", "max_model_len",
                "max_paths_in_prompt", "vllm_engine_args", "repetition_penalty", "no_repeat_ngram_size")
# Bumped when what an LLM writer is asked (prompts.py) or how its output is judged changes (2: the
# degenerate kinds too short, prompt/question echo, no answer), so an artifact judged the old way is
# written again rather than reused.
LLM_VERSION = 2
# Bumped when the template writer's text changes (2: paths only, no "The answer to this question is X"),
# so a template artifact of the old text is written again rather than reused.
TEMPLATE_VERSION = 2


def stage_hash(cfg: Any, paths_dir: Path) -> str:
    """Settings that change the rationales, the seed, and the identity of the input artifact."""
    manifest = Manifest.read(paths_dir)
    if manifest is not None:
        source = manifest.config_hash + json.dumps(manifest.files, sort_keys=True)
    else:
        source = json.dumps({p.name: p.stat().st_size for p in existing_parts(paths_dir).values()})
    synth = cfg.synth.model_dump(mode="json")
    version = {"template_version": TEMPLATE_VERSION} if cfg.synth.backend == "template" else {"llm_version": LLM_VERSION}
    key = json.dumps({"synth": {k: synth[k] for k in CONTENT_KEYS}, **version, "seed": writer_seed(cfg),
                      "model": cfg.model.model_dump(mode="json", include={"name_or_path", "dtype"}),
                      "no_path": cfg.paths.no_path, "source": source}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _read_input(paths_dir: Path) -> tuple[pa.Table, int]:
    try:
        table = read_parts(paths_dir)
    except FileNotFoundError as err:
        raise SynthInputError(f"paths artifact: {err}") from None
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise SynthInputError(f"paths artifact {paths_dir} lacks columns {missing}")
    ids = table.column("id").to_pylist()
    first: dict[str, int] = {}
    for i, row_id in enumerate(ids):
        first.setdefault(row_id, i)
    duplicates = len(ids) - len(first)
    if duplicates:
        table = table.take(sorted(first.values()))
    return table, duplicates


def _reset(out: Path, stamp_value: str) -> None:
    """Clear parts written under another config, then stamp the directory with this one."""
    stamp = out / STAMP
    storage.fetch(stamp)
    if stamp.is_file() and stamp.read_text().strip() != stamp_value:
        for part in existing_parts(out).values():
            storage.remove(part)
        for name in (MANIFEST, "metrics.jsonl"):
            storage.remove(out / name)
        print(f"synth: {out} held rows of another config; starting over", flush=True)
    atomic_write_text(stamp, stamp_value + "\n")


def _done_ids(out: Path, retry_errors: bool) -> set[str]:
    """Ids already written; with retry_errors, error rows are taken out of their parts first."""
    done: set[str] = set()
    for path in existing_parts(out).values():
        part = pq.read_table(path)
        if retry_errors:
            errors = pc.equal(part.column("status"), "error")
            if pc.any(errors).as_py():
                part = part.filter(pc.invert(errors))
                if part.num_rows:
                    atomic_write_parquet(path, part)
                else:
                    storage.remove(path)
        done.update(part.column("id").to_pylist())
    return done


class _PartWriter:
    """Buffers rows from the actors and writes numbered parts atomically, by size or by time."""

    def __init__(self, out: Path, part_rows: int, flush_s: float) -> None:
        self.out, self.part_rows, self.flush_s = out, part_rows, flush_s
        parts = existing_parts(out)
        self.next_index = max(parts) + 1 if parts else 0
        self.buffer: list[pa.Table] = []
        self.rows = 0
        self.written = 0
        self.last = time.monotonic()

    def add(self, table: pa.Table) -> None:
        self.buffer.append(table)
        self.rows += table.num_rows
        if self.rows >= self.part_rows or time.monotonic() - self.last >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        atomic_write_parquet(part_path(self.out, self.next_index), pa.concat_tables(self.buffer))
        self.next_index += 1
        self.written += 1
        self.buffer, self.rows, self.last = [], 0, time.monotonic()


def _generate(cfg: Any, todo: pa.Table, out: Path) -> dict[str, float]:
    from kale_ray.ray_utils import init_ray
    from kale_ray.synth.pipeline import rationale_batches

    init_ray(cfg.ray)
    spec = {"synth": cfg.synth.model_dump(mode="json"), "model": writer_model(cfg), "seed": writer_seed(cfg),
            "dtype": cfg.model.dtype, "no_path": cfg.paths.no_path}
    progress = Progress("synth", total=todo.num_rows, unit="rows", every_s=5.0,
                        metrics_path=out / "metrics.jsonl")
    writer = _PartWriter(out, cfg.synth.part_rows, cfg.synth.flush_s)
    tokens = 0
    for batch in rationale_batches(todo, spec, cfg.synth):
        batch_tokens = int(pc.sum(batch.column("tokens")).as_py() or 0)
        tokens += batch_tokens
        writer.add(batch)
        progress.update(batch.num_rows, tokens=batch_tokens)
    writer.flush()
    progress.close()
    seconds = time.monotonic() - progress.start
    return {"seconds": round(seconds, 2), "rows_per_s": round(todo.num_rows / max(seconds, 1e-9), 3),
            "tokens_per_s": round(tokens / max(seconds, 1e-9), 2), "parts_written": writer.written}


def _counts(final: pa.Table, source: pa.Table, max_paths: int) -> tuple[dict[str, int], dict[str, Any]]:
    status = Counter(final.column("status").to_pylist())
    rows = source.to_pylist()
    with_path = sum(has_path(r, max_paths) for r in rows)
    counts = {"rows": final.num_rows, **{s: status.get(s, 0) for s in STATUSES},
              "ki": int(pc.sum(final.column("ki")).as_py() or 0), "with_path": with_path,
              "no_path": len(rows) - with_path, "tokens": int(pc.sum(final.column("tokens")).as_py() or 0),
              "retries": int(pc.sum(final.column("retries")).as_py() or 0),
              "usable": status.get("ok", 0) + status.get("fallback", 0)}
    extra = {"error_kinds": dict(Counter(k for k, s in zip(final.column("error_kind").to_pylist(),
                                                              final.column("status").to_pylist(), strict=True)
                                         if s in ("error", "degenerate"))),
             "path_status": dict(Counter(r.get("path_status") for r in rows)),
             "degenerate": degenerate_record(final)}
    return counts, extra


def degenerate_record(final: pa.Table) -> dict[str, Any]:
    """How many of the rationales the writer wrote (and the judge read) were not usable, and why: the
    writer's degenerate-output rate, the share of its work that trains nothing."""
    status = final.column("status").to_pylist()
    kinds = Counter(k for k, s in zip(final.column("error_kind").to_pylist(), status, strict=True) if s == "degenerate")
    judged = sum(s in ("ok", "fallback", "degenerate") for s in status)
    bad = sum(kinds.values())
    return {"judged": judged, "degenerate": bad, "rate": round(bad / judged, 4) if judged else None,
            "kinds": dict(kinds.most_common())}


def run_synth_stage(cfg: Any, paths_dir: Path, out: Path, select: dict[str, Any] | None = None) -> Path:
    """Write one rationale row per paths row (docs/stages/synth.md); skip when complete for the same config.

    `select` says how the paths stage's rows were chosen (kale_ray.probe.uses.select_rows); the manifest
    records it with the work done (pairs searched, rationale tokens) under `extra.select`."""
    paths_dir, out = Path(paths_dir), Path(out)
    config_hash = stage_hash(cfg, paths_dir)
    manifest = Manifest.read(out)
    retry = cfg.synth.retry_errors and manifest is not None and manifest.counts.get("error", 0) > 0
    if is_complete(out, config_hash) and not retry:
        print(f"synth: {out} is complete for this config, skipping", flush=True)
        return out
    source, duplicates = _read_input(paths_dir)
    out.mkdir(parents=True, exist_ok=True)
    _reset(out, config_hash)
    done = _done_ids(out, cfg.synth.retry_errors)
    todo = source.filter(pc.invert(pc.is_in(source.column("id"), value_set=pa.array(sorted(done), pa.string()))))
    # By id: the writers' batches (and so an LLM writer's padded shapes) do not follow the order the paths
    # stage's actors happened to finish in.
    todo = todo.sort_by("id")
    print(f"synth: {source.num_rows} rows, {len(done)} already written, {todo.num_rows} to generate "
          f"with the {cfg.synth.backend} backend", flush=True)
    run: dict[str, Any] = {"generated": todo.num_rows}
    if todo.num_rows:
        run.update(_generate(cfg, todo, out))
    if not existing_parts(out):  # an empty input still gets a (empty) part, so readers find a schema
        from kale_ray.synth.rows import output_schema

        atomic_write_parquet(part_path(out, 0), output_schema(source.schema).empty_table())
    final = read_parts(out)
    final_ids = final.column("id").to_pylist()
    if len(final_ids) != len(set(final_ids)) or set(final_ids) != set(source.column("id").to_pylist()):
        raise RuntimeError(f"synth: {out} does not hold exactly one row per input id; delete it and re-run")
    counts, extra = _counts(final, source, cfg.synth.max_paths_in_prompt)
    counts.update(generated=todo.num_rows, reused=len(done), duplicate_input_ids=duplicates)
    from kale_ray.probe.uses import work_record

    select = select or {"mode": cfg.synth.select, "rows_total": source.num_rows, "rows_selected": source.num_rows,
                        "rows_skipped": 0}
    extra["select"] = work_record(select, source, counts["tokens"], cfg.paths.max_pairs_per_row)
    counts["rows_skipped_by_select"] = select["rows_skipped"]
    Manifest(stage="synth", config_hash=config_hash,
             config={"synth": cfg.synth.model_dump(mode="json"), "paths.no_path": cfg.paths.no_path,
                     "seed": writer_seed(cfg)},
             inputs={"paths_dir": str(paths_dir)}, counts=counts,
             extra={**extra, "generator": json.loads(final.column("generator")[0].as_py()), "last_run": run,
                    "nodes": recorded_nodes(existing_parts(out).values())},
             ).write(out)
    degenerate = extra["degenerate"]
    kinds = ", ".join(f"{k} {n}" for k, n in degenerate["kinds"].items())
    rate = "-" if degenerate["rate"] is None else f"{100 * degenerate['rate']:.1f}%"
    print(f"synth: {counts['rows']} rows -> ok {counts['ok']}, fallback {counts['fallback']}, dropped "
          f"{counts['dropped']}, no rationale {counts['no_rationale']}, degenerate {counts['degenerate']} "
          f"({rate} of {degenerate['judged']} written{': ' + kinds if kinds else ''}), error {counts['error']} "
          f"({counts['tokens']} tokens; this run {todo.num_rows} rows in "
          f"{format_seconds(run.get('seconds', 0))}) -> {out}", flush=True)
    return out


def run_synth_from_benchmark(cfg: Any, paths_dir: Path | None = None, out: Path | None = None) -> Path:
    """`kale-ray synth`: data split -> KG -> paths (each skipped when complete) -> rationales.

    With `paths_dir`, an existing paths artifact is used and the KG stages are not run.
    """
    if paths_dir is None:
        from kale_ray.data.stage import read_split, run_data_stage
        from kale_ray.kg.extract import run_paths_stage
        from kale_ray.kg.stage import run_kg_stage
        from kale_ray.probe.uses import select_rows

        rows, select = select_rows(cfg, read_split(run_data_stage(cfg), "train"))
        kg_dir = run_kg_stage(cfg)
        paths_dir = run_paths_stage(cfg, rows, kg_dir, cfg.stage_dir("paths"))
        return run_synth_stage(cfg, Path(paths_dir), Path(out) if out else cfg.stage_dir("synth"), select)
    return run_synth_stage(cfg, Path(paths_dir), Path(out) if out else cfg.stage_dir("synth"))
