"""`kale-ray probe` end to end on a local Ray cluster with the real SmolLM2 and real ARC-Easy rows,
then `synth.select=probe`: path search (real WordNet KG) and rationales only on the rows the probe
marks unknown or uncertain, with the skipped rows and the work recorded in the synth manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from kale_ray.artifacts import Manifest, is_complete, read_parts
from kale_ray.cli import main
from kale_ray.config import load_config
from kale_ray.probe.hidden import read_states
from kale_ray.probe.mlp import Probe

pytestmark = pytest.mark.ray
WORDNET = Path("/usr/share/wordnet")


def _overrides(tmp_path: Path, data_root: Path, smollm2_path: Path) -> list[str]:
    return [f"workdir={tmp_path}", "run_name=p", f"data_root={data_root}", "data.benchmark=arc-easy",
            "data.limit_train=24", "data.limit_test=16", f"model.name_or_path={smollm2_path}",
            "probe.samples=6", "probe.layers=[10, 30]", "probe.epochs=100", "probe.batch_size=8",
            "kg.source=wordnet", f"kg.input={WORDNET}", "paths.workers=1", "paths.worker_cpus=0.5",
            "paths.batch_size=8", "paths.no_path=fallback", "synth.backend=template", "synth.worker_cpus=0.5"]


def test_probe_command_then_probe_selected_synthesis(ray_local, tmp_path, data_root, smollm2_path, capsys):
    from kale_ray.data.stage import read_split, run_data_stage
    from kale_ray.probe.stage import probe_dir, run_labels
    from kale_ray.synth.stage import run_synth_from_benchmark

    overrides = _overrides(tmp_path, data_root, smollm2_path)
    cfg = load_config(None, overrides)
    data = run_data_stage(cfg)
    splits = {s: read_split(data, s) for s in ("train", "test")}
    labels = run_labels(cfg, splits, str(smollm2_path), probe_dir(cfg) / "labels")
    entropy = sorted(labels["train"].column("entropy").to_pylist())
    assert all(0.0 <= e <= np.log(6) + 1e-9 for e in entropy)  # 6 samples: at most 6 groups
    threshold = entropy[len(entropy) // 2]
    if threshold >= entropy[-1]:
        threshold = entropy[0]
    overrides.append(f"probe.threshold={threshold}")

    assert main(["probe", *overrides]) == 0
    printed = capsys.readouterr().out
    assert "probe labels: " in printed and "complete for this config, skipping" in printed  # labels reused
    out = probe_dir(load_config(None, overrides))
    results = json.loads((out / "results.json").read_text())
    assert set(results["layers"]) == {"10", "30"}
    for r in results["layers"].values():
        assert 0.0 <= r["auroc"] <= 1.0 and r["n_train"] == 24 and r["n_test"] == 16
    assert results["best_layer"] in (10, 30)
    best = max(results["layers"].items(), key=lambda kv: kv[1]["auroc"])[0]
    assert str(results["best_layer"]) == best and f"best layer {best}" in printed
    balance = results["label_balance"]["train"]
    assert balance["known"] + balance["unknown"] == 24 and balance["known"] > 0 and balance["unknown"] > 0
    assert (out / "auroc_by_layer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| layer |" in (out / "table.md").read_text()
    manifest = Manifest.read(out)
    assert is_complete(out, manifest.config_hash)
    assert main(["probe", *overrides]) == 0
    assert "probe: " in capsys.readouterr().out

    # synth.select=probe: the probe at its best layer decides which training rows get paths + rationales
    select = load_config(None, [*overrides, "synth.select=probe", "probe.select_margin=0.0"])
    probe = Probe.load(out / "probe.npz")
    ids, x = read_states(out / "hidden", probe.layer)
    train_ids = set(splits["train"].column("id").to_pylist())
    p_known = {i: p for i, p in zip(ids, probe.predict(x).tolist(), strict=True) if i in train_ids}
    skipped = {i for i, p in p_known.items() if p >= 0.5}
    synth = run_synth_from_benchmark(select)
    rows = read_parts(synth)
    assert set(rows.column("id").to_pylist()) == train_ids - skipped
    record = Manifest.read(synth).extra["select"]
    assert record["mode"] == "probe" and record["rows_total"] == 24
    assert record["rows_skipped"] == len(skipped) and record["rows_selected"] == 24 - len(skipped)
    assert Manifest.read(synth).counts["rows_skipped_by_select"] == len(skipped)
    assert record["rationale_tokens"] == Manifest.read(synth).counts["tokens"]
    paths = read_parts(select.stage_dir("paths"))
    assert paths.num_rows == 24 - len(skipped)
    assert record["nodes_expanded"] == sum(paths.column("nodes_expanded").to_pylist())
    assert pq.read_table(out / "labels" / "train.parquet").num_rows == 24
