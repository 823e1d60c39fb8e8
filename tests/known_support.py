"""Real KGs and real paths for the known&incorrect tests: WordNet and the MetaQA KB built once into the
shared test cache (the kg tests' builds), and the paths stage's own row search (`RowPathFinder`, in
process) over real benchmark rows."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa

WORDNET = Path("/usr/share/wordnet")


def kg_dir(source: str, data_root: Path) -> Path:
    """The cached build of a real KG source (skipped when complete, shared with tests/unit/test_kg_*)."""
    from kale_ray.kg.stage import build_kg

    where = data_root / "metaqa" / "kb.txt" if source == "metaqa" else WORDNET
    return build_kg(source, where, Path(tempfile.gettempdir()) / f"kale-ray-tests-{os.getuid()}" / "kg-layout2" / source)


def search_paths(rows: list[dict[str, Any]], kg_path: Path) -> pa.Table:
    """`id` and the paths stage's columns for each row, searched as the paths stage does (default config)."""
    from kale_ray.config import load_config
    from kale_ray.kg.extract import EXTRA_FIELDS, RowPathFinder
    from kale_ray.kg.store import load_kg

    cfg = load_config(None, [])
    finder = RowPathFinder(load_kg(kg_path), cfg.kg.model_dump(mode="json"), cfg.paths.model_dump(mode="json"), 0)
    outs = finder.process_batch(rows)
    columns = {"id": pa.array([r["id"] for r in rows], pa.string())}
    for f in EXTRA_FIELDS:
        columns[f.name] = pa.array([o[f.name] for o in outs], f.type)
    return pa.table(columns)
