"""`kale-ray probe`: labels -> hidden states -> an MLP probe per layer -> AUROC by layer.

    <out>/                       (default <workdir>/<run>/results/probe)
      labels/train.parquet, labels/test.parquet, labels/manifest.json   semantic-entropy labels
      hidden/part-*.parquet, hidden/manifest.json                       last-token states (Ray Data)
      results.json  table.md  auroc_by_layer.png  probe.npz  manifest.json

The probe is trained on the data stage's training rows and judged on its held-out rows (both are
labelled: AUROC needs the truth there too). Each step skips itself when its artifact is complete for
the same config, so a re-run after a crash resumes at the first missing step.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kale_ray.artifacts import (
    Manifest,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_parquet,
    atomic_write_text,
    is_complete,
)
from kale_ray.progress import Progress

LABEL_KEYS = ("samples", "temperature", "max_new_tokens")  # the threshold applies on read


def probe_dir(cfg: Any) -> Path:
    return Path(cfg.probe.out) if cfg.probe.out else cfg.stage_dir("results") / "probe"


def probe_seed(cfg: Any) -> int:
    return cfg.probe.seed if cfg.probe.seed is not None else cfg.seed


def _ids_hash(table: pa.Table) -> str:
    return hashlib.sha256("\n".join(table.column("id").to_pylist()).encode()).hexdigest()[:16]


def run_labels(cfg: Any, splits: dict[str, pa.Table], model_path: str, out: Path) -> dict[str, pa.Table]:
    """Label every split's rows (one scoring pass per question for multiple choice) in a Ray task."""
    from kale_ray.probe.labels import apply_threshold

    probe = cfg.probe.model_dump(mode="json")
    key = json.dumps({"model": model_path, "dtype": cfg.model.dtype, "seed": probe_seed(cfg),
                      "probe": {k: probe[k] for k in LABEL_KEYS},
                      "ids": {s: _ids_hash(t) for s, t in splits.items()}}, sort_keys=True)
    config_hash = hashlib.sha256(key.encode()).hexdigest()[:16]
    if is_complete(out, config_hash):
        print(f"probe labels: {out} is complete for this config, skipping", flush=True)
        return {s: apply_threshold(pq.read_table(out / f"{s}.parquet"), cfg.probe.threshold) for s in splits}
    import ray

    from kale_ray.ray_utils import init_ray

    init_ray(cfg.ray)  # the model runs in a task that asks for the stage's CPUs/GPUs, never in the driver
    task = ray.remote(num_cpus=cfg.probe.worker_cpus, num_gpus=cfg.probe.worker_gpus)(_label_splits)
    labelled = ray.get(task.remote(cfg, splits, model_path, out))
    counts = {f"{split}_rows": table.num_rows for split, table in labelled.items()}
    Manifest(stage="probe-labels", config_hash=config_hash, config={k: probe[k] for k in LABEL_KEYS},
             inputs={"model": model_path}, counts=counts).write(out)
    return labelled


def _label_splits(cfg: Any, splits: dict[str, pa.Table], model_path: str, out: Path) -> dict[str, pa.Table]:
    """Label every split's rows with one engine, writing each split's parquet as it completes."""
    from kale_ray.engines.hf import HFEngine
    from kale_ray.probe.labels import label_rows

    engine = HFEngine(model_path, dtype=cfg.model.dtype, device=cfg.eval.device,
                      max_batch_seqs=cfg.eval.batch_size)
    labelled: dict[str, pa.Table] = {}
    for split, table in splits.items():
        rows = table.to_pylist()
        progress = Progress(f"probe labels {split}", len(rows), metrics_path=out / "metrics.jsonl")
        parts = []
        for start in range(0, len(rows), 32):
            parts.append(label_rows(engine, rows[start:start + 32], cfg))
            progress.update(len(rows[start:start + 32]))
        progress.close()
        labelled[split] = pa.concat_tables(parts)
        atomic_write_parquet(out / f"{split}.parquet", labelled[split])
    return labelled


def _xy(hidden: Path, layer: int, labels: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    from kale_ray.probe.hidden import read_states

    ids, x = read_states(hidden, layer)
    known = {r["id"]: r["known"] for r in labels.select(["id", "known"]).to_pylist()}
    keep = [i for i, rid in enumerate(ids) if known.get(rid) is not None]
    return x[keep], np.array([known[ids[i]] for i in keep], dtype=bool)


def sweep(cfg: Any, hidden: Path, labels: dict[str, pa.Table]) -> tuple[dict[str, Any], Any]:
    """Train one probe per layer on train, AUROC on test; (results, best probe)."""
    from kale_ray.probe.mlp import auroc, train_probe

    per_layer: dict[str, dict[str, Any]] = {}
    best = None
    for layer in cfg.probe.layers:
        x_train, y_train = _xy(hidden, layer, labels["train"])
        x_test, y_test = _xy(hidden, layer, labels["test"])
        if len(set(y_train.tolist())) < 2:
            raise ValueError(f"probe: the training labels are all {bool(y_train[0]) if len(y_train) else None}"
                             f"; change probe.threshold (now {cfg.probe.threshold}) or probe.temperature")
        probe = train_probe(x_train, y_train, layer, cfg.probe, probe_seed(cfg))
        score = auroc(probe.predict(x_test), y_test)
        per_layer[str(layer)] = {"auroc": score, "train_auroc": auroc(probe.predict(x_train), y_train),
                                 "n_train": int(len(y_train)), "n_test": int(len(y_test))}
        print(f"probe: layer {layer}: AUROC {score:.4f} on {len(y_test)} held-out rows", flush=True)
        if not math.isnan(score) and (best is None or score > per_layer[str(best.layer)]["auroc"]):
            best = probe
    return {"layers": per_layer, "best_layer": best.layer if best else None}, best


def balance(table: pa.Table) -> dict[str, Any]:
    known = table.column("known").to_pylist()
    entropy = [e for e in table.column("entropy").to_pylist() if e is not None]
    n = sum(1 for k in known if k is not None)
    n_known = sum(1 for k in known if k is True)
    return {"rows": len(known), "known": n_known, "unknown": n - n_known, "unlabelled": len(known) - n,
            "known_share": n_known / n if n else None,
            "mean_entropy": float(np.mean(entropy)) if entropy else None}


def table_md(results: dict[str, Any]) -> str:
    lines = ["| layer | AUROC (held-out) | AUROC (train) | train rows | held-out rows |", "|---|---|---|---|---|"]
    for layer, r in results["layers"].items():
        mark = " (best)" if str(results["best_layer"]) == layer else ""
        lines.append(f"| {layer}{mark} | {r['auroc']:.4f} | {r['train_auroc']:.4f} | {r['n_train']} | {r['n_test']} |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = [int(k) for k in results["layers"]]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(layers, [results["layers"][str(k)]["auroc"] for k in layers], marker="o", label="held-out")
    ax.plot(layers, [results["layers"][str(k)]["train_auroc"] for k in layers], marker=".", ls=":", label="train")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("layer (hidden_states index)")
    ax.set_ylabel("AUROC")
    ax.set_title(f"known/unknown probe, best layer {results['best_layer']}")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def run_probe_stage(cfg: Any, out: Path | None = None) -> Path:
    """The whole probe stage on the data stage's splits; skips itself when complete."""
    from kale_ray.data.stage import read_split, run_data_stage
    from kale_ray.engines.registry import resolve_model_in_task
    from kale_ray.probe.hidden import run_hidden_stage

    out = Path(out) if out else probe_dir(cfg)
    data_dir = run_data_stage(cfg)
    splits = {s: read_split(data_dir, s) for s in ("train", "test")}
    model_path = str(resolve_model_in_task(cfg.model.name_or_path, cfg.model.cache_dir, cfg.models_dir))
    config_hash = hashlib.sha256(json.dumps(
        {"probe": cfg.probe.model_dump(mode="json", exclude={"workers", "worker_cpus", "batch_size", "out", "select_margin"}),
         "model": model_path, "dtype": cfg.model.dtype, "seed": probe_seed(cfg),
         "ids": {s: _ids_hash(t) for s, t in splits.items()}}, sort_keys=True).encode()).hexdigest()[:16]
    if is_complete(out, config_hash):
        print(f"probe: {out} is complete for this config, skipping", flush=True)
        return out
    labels = run_labels(cfg, splits, model_path, out / "labels")
    both = pa.concat_tables([t.select(["id", "question"]) for t in splits.values()])
    hidden = run_hidden_stage(cfg, _unique(both), out / "hidden", model_path)
    results, best = sweep(cfg, hidden, labels)
    results.update({"label_balance": {s: balance(t) for s, t in labels.items()},
                    "threshold": cfg.probe.threshold, "samples": cfg.probe.samples,
                    "temperature": cfg.probe.temperature, "model": model_path,
                    "hidden_counts": Manifest.read(hidden).counts})
    if best is not None:
        best.save(out / "probe.npz")
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "table.md", table_md(results))
    plot(results, out / "auroc_by_layer.png")
    Manifest(stage="probe", config_hash=config_hash, config=cfg.probe.model_dump(mode="json"),
             inputs={"model": model_path, "data": str(data_dir)},
             counts={"train": splits["train"].num_rows, "test": splits["test"].num_rows},
             extra={"best_layer": results["best_layer"]},
             ).write(out, hash_files=[out / n for n in ("results.json", "table.md", "auroc_by_layer.png", "probe.npz")
                                      if (out / n).is_file()])
    print(table_md(results), flush=True)
    print(f"probe: best layer {results['best_layer']}; label balance {results['label_balance']}; "
          f"results in {out}", flush=True)
    return out


def _unique(table: pa.Table) -> pa.Table:
    first: dict[str, int] = {}
    for i, rid in enumerate(table.column("id").to_pylist()):
        first.setdefault(rid, i)
    return table.take(sorted(first.values()))
