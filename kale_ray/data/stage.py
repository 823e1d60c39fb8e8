"""The data stage: the benchmark's deterministic train/test split as an artifact every stage reads."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from kale_ray import storage
from kale_ray.artifacts import Manifest, atomic_write_parquet, is_complete
from kale_ray.data.load import load_splits
from kale_ray.ray_utils import this_node


def run_data_stage(cfg, out: Path | None = None) -> Path:  # noqa: ANN001 (KaleConfig)
    """Write `train.parquet` and `test.parquet` once per data config; skip when already complete."""
    out = Path(out or cfg.stage_dir("data"))
    config_hash = cfg.section_hash("data", "data_root")
    if is_complete(out, config_hash):
        print(f"data: {out} is complete for this config, skipping", flush=True)
        return out
    splits = load_splits(cfg)
    atomic_write_parquet(out / "train.parquet", splits.train)
    atomic_write_parquet(out / "test.parquet", splits.test)
    Manifest(stage="data", config_hash=config_hash, config=cfg.data.model_dump(mode="json"),
             inputs={"benchmark": cfg.data.benchmark, "data_root": str(cfg.data_root)},
             counts={"train": splits.train.num_rows, "test": splits.test.num_rows,
                     "loaded": splits.report.rows, "skipped": splits.report.skipped},
             extra={"load_report": splits.report.as_dict(), "nodes": [this_node()]}).write(out)
    print(f"data: {cfg.data.benchmark} -> {splits.train.num_rows} train / {splits.test.num_rows} test "
          f"rows ({splits.report.skipped} skipped) in {out}", flush=True)
    return out


def read_split(stage_dir: Path, split: str):  # noqa: ANN201 (pyarrow.Table)
    path = Path(stage_dir) / f"{split}.parquet"
    storage.fetch(path)
    return pq.read_table(path)
