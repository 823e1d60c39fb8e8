"""The training rows every arm of a pipeline shares (`train.rows=shared`), and the check that they did.

A comparison of two arms is fair only if both saw the same examples for the same number of optimizer
steps. Left to itself each arm trains on whatever its source makes usable (SFT on every training row,
KALE on the rows whose rationale came out usable, KALE w/o KI on those of its own writer run), so the
arms differ in data, in steps, and in which questions they saw. The shared set is explicit instead:

- the training rows of the data stage,
- when the run trains a method that reads rationales: only those with KG paths and a usable rationale
  (status `ok`: a row with a path, written, not degenerate) in *every* rationales artifact the run
  trains on (the KI one, and the w/o-KI one when `ka-noki` is trained),

and every arm, SFT included, trains on exactly those ids. With the same rows and the same config the
step count (`train.max_steps`, or epochs x rows per step) is the same for every arm, and so is the data
order (the seeded shuffle of the rows sorted by id). The KI vs w/o-KI contrast is then on rows that
have paths, the same rows in both arms, by construction.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from kale_ray.artifacts import Manifest, atomic_write_json, read_parts

ROWS_FILE = "rows.json"
# The rationale statuses of a row with a KG path that the writer wrote and the judge kept. `fallback`
# (written without a path) is not one of them: such a row has no KG paths, so it cannot serve the KI
# vs w/o-KI contrast.
SHARED_STATUS = "ok"


def row_ids_hash(ids: list[str]) -> str:
    """A short content hash of a set of row ids (order-free): equal hashes, equal rows."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def usable_with_paths(rationales: pa.Table) -> set[str]:
    """Ids of a rationales artifact's rows that had KG paths and got a usable, non-empty rationale."""
    text = pc.utf8_trim_whitespace(pc.fill_null(rationales.column("rationale"), ""))
    keep = pc.and_(pc.equal(rationales.column("status"), SHARED_STATUS), pc.greater(pc.utf8_length(text), 0))
    return set(rationales.filter(keep).column("id").to_pylist())


def shared_row_ids(train: pa.Table, rationale_dirs: dict[str, Path]) -> tuple[list[str], dict[str, Any]]:
    """The sorted ids every arm trains on, and how they were derived (counts per source)."""
    training = set(train.column("id").to_pylist())
    ids = set(training)
    record: dict[str, Any] = {"training_rows": len(ids), "sources": {}}
    for name, directory in sorted(rationale_dirs.items()):
        usable = usable_with_paths(read_parts(directory))
        record["sources"][name] = {"dir": str(directory), "usable_with_paths": len(usable & training)}
        ids &= usable
    shared = sorted(ids)
    record.update(shared=len(shared), row_ids_sha256=row_ids_hash(shared))
    return shared, record


def write_shared_rows(train: pa.Table, rationale_dirs: dict[str, Path], out: Path) -> Path:
    """`<run>/rows/rows.json`: the shared ids and their derivation (read by the train runs and a reader)."""
    shared, record = shared_row_ids(train, rationale_dirs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / ROWS_FILE, {**record, "ids": shared})
    per_source = ", ".join(f"{n}: {s['usable_with_paths']} usable with paths" for n, s in record["sources"].items())
    print(f"rows: {len(shared)} of {record['training_rows']} training rows shared by every arm "
          f"({per_source or 'no rationales needed'})", flush=True)
    return out / ROWS_FILE


def check_same_rows_and_steps(run_dirs: dict[str, Path]) -> dict[str, Any]:
    """Every run's train manifest names the same row set and step count; a RuntimeError says which
    differ. Returns the common (rows, row_ids_sha256, optimizer_steps)."""
    seen: dict[str, tuple[Any, Any, Any]] = {}
    for name, directory in run_dirs.items():
        manifest = Manifest.read(Path(directory))
        if manifest is None:
            raise RuntimeError(f"train {name}: no manifest in {directory}")
        seen[name] = (manifest.counts.get("rows_used"), manifest.inputs.get("row_ids_sha256"),
                      manifest.counts.get("optimizer_steps"))
    if len(set(seen.values())) > 1:
        shown = "; ".join(f"{n}: {r} rows ({h}), {s} steps" for n, (r, h, s) in seen.items())
        raise RuntimeError(f"train.rows=shared, but the arms trained on different rows or steps: {shown}")
    rows, digest, steps = next(iter(seen.values()), (None, None, None))
    return {"rows": rows, "row_ids_sha256": digest, "optimizer_steps": steps}
