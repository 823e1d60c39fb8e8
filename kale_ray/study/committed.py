"""The study's committed results (`study.committed`, docs/study/): what the page needs, small enough to
commit, so the page can be rebuilt after the machine that ran the study is gone, and extended when new
runs complete elsewhere.

    docs/study/
      study.json                  the study's setup and side runs (as collected)
      variants/<name>.json        one variant's collected numbers: eval metrics per model and benchmark,
                                  train and stage records, path and synthesis counts (no per-item data)
      variants/<name>.items.parquet   per item, per model: predictions and correctness (acc, acc_norm,
                                  known), the primary contrasts' input; never model weights or log-likelihoods
      manifest.json               every file's sha256 and size, and the folder's total

Collecting merges: what the artifacts hold now replaces the committed record of the same (model,
benchmark) pair, training run or stage, and everything the artifacts no longer hold is kept. A machine
that runs one more seed adds it without losing the seeds it never had.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from kale_ray.artifacts import atomic_write_json, atomic_write_parquet, file_sha256

ITEMS_SCHEMA = pa.schema([
    ("label", pa.string()), ("benchmark", pa.string()), ("id", pa.string()),
    ("pred", pa.int16()), ("pred_norm", pa.int16()),  # -1 for a generative item
    ("acc", pa.int8()), ("acc_norm", pa.int8()), ("correct", pa.float32()), ("known", pa.bool_()),
])
# A variant's record keys that are a whole (the artifacts' version wins, else the committed one).
_WHOLE = ("recipe", "run_dir", "overrides", "synth_backend", "synth_select", "paths", "synth", "synth-noki", "paths-test",
          "path_stats", "probe")


def recipe_hash(variant_cfg: Any) -> str:
    """What a variant's results depend on: its config without where it runs (workdir, data root, the
    Ray and Serve settings, the model cache, the study section). Committed results of the same recipe
    stand in for a run whose artifacts are gone."""
    import hashlib

    tree = variant_cfg.model_dump(mode="json", exclude={"workdir", "data_root", "ray", "serve", "study"})
    tree["model"].pop("cache_dir", None)
    return hashlib.sha256(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()[:16]


def complete(folder: Path, name: str, recipe: str) -> bool:
    """Whether the committed folder holds a variant's whole evaluation for this recipe."""
    path = Path(folder) / "variants" / f"{name}.json"
    if not path.is_file():
        return False
    record = json.loads(path.read_text())
    evaluation = record.get("eval") or {}
    return record.get("recipe") == recipe and bool(evaluation.get("summary")) and not evaluation.get("partial")


def item_rows(results: Path) -> pa.Table:
    """Per item and scored model, from an eval results directory's predictions.jsonl files."""
    rows: list[dict[str, Any]] = []
    for preds in sorted(Path(results).glob("*/*/predictions.jsonl")):
        label, bench = preds.parent.parent.name, preds.parent.name
        for line in preds.read_text().splitlines():
            if not line.strip():
                continue
            p = json.loads(line)
            acc = p.get("acc", p.get("correct"))
            rows.append({"label": label, "benchmark": bench, "id": p["id"], "pred": p.get("pred", -1),
                         "pred_norm": p.get("pred_norm", -1), "acc": int(bool(acc)),
                         "acc_norm": int(bool(p.get("acc_norm", acc))), "correct": float(p.get("correct", acc) or 0),
                         "known": p.get("known")})
    return pa.Table.from_pylist(rows, schema=ITEMS_SCHEMA)


def item_strings(items: pa.Table) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """The compact per-item form the contrasts read: benchmark -> sorted item ids, and label ->
    benchmark -> {"acc", "acc_norm"} as strings of 1/0 aligned with those ids ("." where that model has
    no score for the item)."""
    scored: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
    for r in items.select(["label", "benchmark", "id", "acc", "acc_norm"]).to_pylist():
        scored.setdefault(r["label"], {}).setdefault(r["benchmark"], {})[r["id"]] = r
    ids: dict[str, list[str]] = {}
    for per_bench in scored.values():
        for bench, per_item in per_bench.items():
            ids[bench] = sorted(set(ids.get(bench, [])) | set(per_item))
    strings = {label: {bench: {key: "".join(str(per_item[i][key]) if i in per_item else "." for i in ids[bench])
                               for key in ("acc", "acc_norm")} for bench, per_item in per_bench.items()}
               for label, per_bench in scored.items()}
    return ids, strings


def _pairs(items: pa.Table) -> set[tuple[str, str]]:
    return set(zip(items.column("label").to_pylist(), items.column("benchmark").to_pylist(), strict=True))


def merge_items(old: pa.Table, new: pa.Table) -> pa.Table:
    """The new table's (label, benchmark) pairs replace the old's; the old's other pairs stay. Sorted,
    so the same rows give the same file."""
    fresh = _pairs(new)
    keep = [i for i, pair in enumerate(zip(old.column("label").to_pylist(), old.column("benchmark").to_pylist(),
                                           strict=True)) if pair not in fresh]
    merged = pa.concat_tables([old.take(pa.array(keep, pa.int64())).cast(ITEMS_SCHEMA), new.cast(ITEMS_SCHEMA)])
    return merged.sort_by([("label", "ascending"), ("benchmark", "ascending"), ("id", "ascending")])


def _merge_nested(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """label -> benchmark -> metrics: the new pairs win, the old pairs stay."""
    out = {k: dict(v) for k, v in old.items()}
    for k, v in new.items():
        out.setdefault(k, {}).update(v)
    return out


def merge_variant(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """One variant's record: the artifacts' (`new`) over the committed one (`old`), pair by pair, run by
    run and stage by stage. `partial` is recomputed: some run lacks a benchmark the others have."""
    if not old:
        merged = dict(new)
    else:
        merged = dict(old)
        for key in _WHOLE:
            if new.get(key) is not None:
                merged[key] = new[key]
        merged["runs"] = {**(old.get("runs") or {}), **(new.get("runs") or {})}
        merged["train"] = {**(old.get("train") or {}), **(new.get("train") or {})}
        merged["stages"] = {"source": (new.get("stages") or old.get("stages") or {}).get("source"),
                            "seconds": {**(old.get("stages") or {}).get("seconds", {}),
                                        **(new.get("stages") or {}).get("seconds", {})}}
        old_eval, new_eval = old.get("eval") or {}, new.get("eval") or {}
        merged["eval"] = {"source": new_eval.get("source") if new_eval.get("summary") else old_eval.get("source"),
                          "summary": _merge_nested(old_eval.get("summary") or {}, new_eval.get("summary") or {})}
    summary = (merged.get("eval") or {}).get("summary") or {}
    benches = {b for per_bench in summary.values() for b in per_bench}
    expected = set(merged.get("runs") or summary)
    merged["eval"] = {"source": (merged.get("eval") or {}).get("source"), "summary": summary or None,
                      **({"partial": True} if summary and any(set(summary.get(label, {})) != benches
                                                              for label in expected) else {})}
    return merged


def read(folder: Path) -> tuple[dict[str, Any] | None, dict[str, tuple[dict[str, Any], pa.Table]]]:
    """(study record, variant -> (record, items)) from a committed folder; (None, {}) when there is none."""
    folder = Path(folder)
    study = json.loads((folder / "study.json").read_text()) if (folder / "study.json").is_file() else None
    variants: dict[str, tuple[dict[str, Any], pa.Table]] = {}
    for path in sorted((folder / "variants").glob("*.json")):
        items_path = path.with_suffix(".items.parquet")
        items = pq.read_table(items_path).cast(ITEMS_SCHEMA) if items_path.is_file() else ITEMS_SCHEMA.empty_table()
        variants[path.stem] = (json.loads(path.read_text()), items)
    return study, variants


def write(folder: Path, study: dict[str, Any], variants: dict[str, tuple[dict[str, Any], pa.Table]]) -> dict[str, Any]:
    """Write the folder, files first and the manifest last; returns the manifest."""
    folder = Path(folder)
    atomic_write_json(folder / "study.json", study)
    for name, (record, items) in variants.items():
        atomic_write_json(folder / "variants" / f"{name}.json", record)
        atomic_write_parquet(folder / "variants" / f"{name}.items.parquet", items.cast(ITEMS_SCHEMA))
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json")
    manifest = {"files": {str(p.relative_to(folder)): {"sha256": file_sha256(p), "bytes": p.stat().st_size}
                          for p in files}}
    manifest["bytes"] = sum(f["bytes"] for f in manifest["files"].values())
    atomic_write_json(folder / "manifest.json", manifest)
    return manifest


def verify(folder: Path) -> list[str]:
    """Files whose content no longer matches the manifest (edited by hand, or half-copied)."""
    manifest_path = Path(folder) / "manifest.json"
    if not manifest_path.is_file():
        return []
    manifest = json.loads(manifest_path.read_text())
    return [rel for rel, f in manifest["files"].items()
            if not (Path(folder) / rel).is_file() or file_sha256(Path(folder) / rel) != f["sha256"]]
