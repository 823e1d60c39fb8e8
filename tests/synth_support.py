"""Paths artifacts for the synth tests, built from REAL ARC-Easy rows (kale_ray.data) with hand-written
path triples and texts in the paths-artifact schema (docs/stages/kg.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa

from kale_ray.artifacts import Manifest, atomic_write_parquet, part_path
from kale_ray.config import KaleConfig, load_config
from kale_ray.data.benchmarks import SCHEMA
from kale_ray.data.load import load_splits
from kale_ray.kg.extract import EXTRA_FIELDS

PATHS_SCHEMA = pa.schema([*SCHEMA, *EXTRA_FIELDS])  # the paths artifact of the KG stage


def arc_rows(data_root: Path, n: int) -> list[dict]:
    cfg = load_config(overrides=[f"data_root={data_root}", "data.benchmark=arc-easy", f"data.limit_train={n}"])
    return load_splits(cfg).train.to_pylist()


def _keyword(question: str) -> str:
    words = sorted(re.findall(r"[a-z]{4,}", question.lower()), key=len, reverse=True)
    return words[0] if words else "thing"


def with_paths(row: dict, found: bool) -> dict:
    """A row as the paths stage would write it: one 2-hop path (found) or status no_path."""
    q, a = _keyword(row["question"]), row["gold_text"].lower().rstrip(".")
    if not found:
        return {**row, "q_entities": [f"wn:{q}"], "a_entities": [], "paths": "[]", "path_texts": [],
                "path_status": "no_answer_entity", "nodes_expanded": 0, "search_seconds": 0.0}
    triples = [[f"wn:{q}", "hypernym", "wn:entity", False], ["wn:entity", "hypernym", f"wn:{a}", True]]
    texts = [f"{q} is a kind of entity, and {a} is a kind of entity"]
    return {**row, "q_entities": [f"wn:{q}"], "a_entities": [f"wn:{a}"], "paths": json.dumps([triples]),
            "path_texts": texts, "path_status": "ok", "nodes_expanded": 7, "search_seconds": 0.001}


def write_paths_artifact(out: Path, rows: list[dict], no_path_every: int = 4, parts: int = 1) -> Path:
    """Every `no_path_every`-th row has no path; rows spread over `parts` part files."""
    full = [with_paths(r, found=(i % no_path_every != no_path_every - 1)) for i, r in enumerate(rows)]
    size = -(-len(full) // parts)
    for index in range(parts):
        chunk = full[index * size:(index + 1) * size]
        atomic_write_parquet(part_path(out, index), pa.Table.from_pylist(chunk, schema=PATHS_SCHEMA))
    statuses = [r["path_status"] for r in full]
    Manifest(stage="paths", config_hash=f"test-{len(full)}-{no_path_every}",
             counts={"rows": len(full), "with_path": statuses.count("ok"),
                     "no_path": len(full) - statuses.count("ok")}).write(out)
    return out


def synth_config(tmp: Path, data_root: Path, *overrides: str) -> KaleConfig:
    return load_config(overrides=[f"workdir={tmp}", f"data_root={data_root}", "ray.num_cpus=2",
                                  "synth.worker_cpus=0.5", "synth.batch_size=4", *overrides])
