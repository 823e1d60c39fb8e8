"""The shared row set of a pipeline's arms (train.rows=shared): rows with KG paths and a usable rationale
in every rationales artifact the run trains on, and the check that every arm's manifest names them."""

from __future__ import annotations

import pyarrow as pa
import pytest

from kale_ray.artifacts import Manifest, atomic_write_parquet, part_path
from kale_ray.train.rows import check_same_rows_and_steps, row_ids_hash, shared_row_ids, write_shared_rows


def _rationales(tmp_path, name: str, rows: dict[str, tuple[str, str | None]]):
    out = tmp_path / name
    table = pa.table({"id": list(rows), "status": [s for s, _ in rows.values()],
                      "rationale": [r for _, r in rows.values()]})
    atomic_write_parquet(part_path(out, 0), table)
    return out


def test_shared_rows_need_paths_and_a_usable_rationale_in_every_source(tmp_path):
    train = pa.table({"id": ["a", "b", "c", "d", "e", "f"]})
    ki = _rationales(tmp_path, "synth", {"a": ("ok", "A."), "b": ("ok", "B."), "c": ("fallback", "C."),
                                         "d": ("degenerate", "d d d"), "e": ("ok", "  "), "f": ("ok", "F."),
                                         "z": ("ok", "not a training row")})
    noki = _rationales(tmp_path, "synth-noki", {"a": ("ok", "A."), "b": ("degenerate", ""), "c": ("fallback", "C."),
                                                "d": ("ok", "D."), "e": ("ok", "E."), "f": ("ok", "F.")})
    ids, record = shared_row_ids(train, {"synth": ki, "synth-noki": noki})
    # c has no path (fallback), d and b degenerate in one source, e's rationale is blank, z is no training row
    assert ids == ["a", "f"]
    assert record["sources"]["synth"]["usable_with_paths"] == 3 and record["sources"]["synth-noki"]["usable_with_paths"] == 4
    assert record["row_ids_sha256"] == row_ids_hash(["f", "a"]) != row_ids_hash(["a"])
    only_ki, _ = shared_row_ids(train, {"synth": ki})
    assert only_ki == ["a", "b", "f"]
    # No rationales needed (SFT alone): every training row.
    assert shared_row_ids(train, {})[0] == ["a", "b", "c", "d", "e", "f"]
    written = write_shared_rows(train, {"synth": ki}, tmp_path / "rows")
    assert written.name == "rows.json" and '"ids": [' in written.read_text()


def _manifest(directory, rows: int, digest: str, steps: int) -> None:
    directory.mkdir(parents=True)
    Manifest(stage="train", config_hash="k", inputs={"row_ids_sha256": digest},
             counts={"rows_used": rows, "optimizer_steps": steps}).write(directory, [])


def test_arms_on_other_rows_or_steps_fail_the_check(tmp_path):
    _manifest(tmp_path / "sft", 8, "h1", 4)
    _manifest(tmp_path / "ka", 8, "h1", 4)
    assert check_same_rows_and_steps({"sft": tmp_path / "sft", "ka": tmp_path / "ka"}) == {
        "rows": 8, "row_ids_sha256": "h1", "optimizer_steps": 4}
    _manifest(tmp_path / "ka-ce", 8, "h2", 4)
    with pytest.raises(RuntimeError, match="different rows or steps: .*ka-ce: 8 rows \\(h2\\), 4 steps"):
        check_same_rows_and_steps({"sft": tmp_path / "sft", "ka-ce": tmp_path / "ka-ce"})
