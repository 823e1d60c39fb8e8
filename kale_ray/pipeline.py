"""The end-to-end pipeline: each stage skipped when its artifact is complete for the same config.

Stages run in order and record their wall time in `<run>/pipeline.json`, so a re-run after a crash
resumes at the first incomplete stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kale_ray.artifacts import atomic_write_json
from kale_ray.progress import format_seconds


def _stage_model(cfg) -> Any:  # noqa: ANN001
    from kale_ray.model.prepare import resolve_model

    return resolve_model(cfg.model.name_or_path, cfg.model.cache_dir)


def _stage_data(cfg) -> Any:  # noqa: ANN001
    from kale_ray.data.stage import run_data_stage

    return run_data_stage(cfg)


STAGES: list[tuple[str, Callable[[Any], Any]]] = [
    ("model", _stage_model),
    ("data", _stage_data),
]


def run_pipeline(cfg) -> dict[str, Any]:  # noqa: ANN001 (KaleConfig)
    run_dir = Path(cfg.workdir) / cfg.run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"run": cfg.run_name, "stages": {}}
    start = time.monotonic()
    for name, fn in STAGES:
        t0 = time.monotonic()
        print(f"pipeline: stage {name} ...", flush=True)
        result = fn(cfg)
        seconds = time.monotonic() - t0
        record["stages"][name] = {"seconds": round(seconds, 2), "result": str(result)}
        print(f"pipeline: stage {name} done in {format_seconds(seconds)} -> {result}", flush=True)
        atomic_write_json(run_dir / "pipeline.json", record)
    record["seconds"] = round(time.monotonic() - start, 2)
    atomic_write_json(run_dir / "pipeline.json", record)
    print(f"pipeline: finished in {format_seconds(record['seconds'])}; artifacts in {run_dir}", flush=True)
    return record
