"""Rationale tables for training tests: REAL ARC-Easy rows plus rationale strings written here.

The synth stage writes the real rationales; these stand in for its output with the contract's
columns (status, rationale) so the trainer can be tested on its own.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from kale_ray.data.benchmarks import load_benchmark


def arc_rows(data_root: Path, n: int) -> pa.Table:
    table = load_benchmark("arc-easy", data_root, "test")
    return table.slice(0, n)


def with_rationales(rows: pa.Table, statuses: list[str] | None = None) -> pa.Table:
    """Adds `rationale` (a short sentence naming the gold answer) and `status` to real rows."""
    rationales, status = [], []
    for i, row in enumerate(rows.to_pylist()):
        st = statuses[i] if statuses else "ok"
        status.append(st)
        rationales.append(None if st == "dropped" else
                          f"The question asks about {row['question'].split()[0].lower()} facts; "
                          f"reasoning step by step, the correct option is {row['gold_text']}.")
    return rows.append_column("rationale", pa.array(rationales, pa.string())).append_column(
        "status", pa.array(status, pa.string()))


def write_rationales(rows: pa.Table, out: Path) -> Path:
    """A rationales artifact directory with one part file, read back like the synth stage's."""
    from kale_ray.artifacts import Manifest, atomic_write_parquet, part_path

    atomic_write_parquet(part_path(out, 0), rows)
    Manifest(stage="synth", config_hash="test", counts={"rows": rows.num_rows}).write(out)
    return out
