"""The full synth stage with the hf writer (REAL SmolLM2-135M-Instruct) in Ray Data actors."""

from __future__ import annotations

import json

import pytest
from synth_support import arc_rows, synth_config, write_paths_artifact

from kale_ray.artifacts import Manifest, read_parts
from kale_ray.progress import read_metrics
from kale_ray.synth.stage import run_synth_stage

pytestmark = pytest.mark.ray


def test_hf_stage_on_real_rows(ray_local, tmp_path, data_root, smollm2_path, capsys):
    paths_dir = write_paths_artifact(tmp_path / "paths", arc_rows(data_root, 6), no_path_every=3)
    cfg = synth_config(tmp_path, data_root, "synth.backend=hf", f"synth.model={smollm2_path}",
                       "synth.max_new_tokens=16", "synth.batch_size=3", "seed=7")
    out = run_synth_stage(cfg, paths_dir, tmp_path / "synth")
    table = read_parts(out)
    assert table.num_rows == 6 and len(set(table.column("id").to_pylist())) == 6
    counts = Manifest.read(out).counts
    assert counts["with_path"] == 4 and counts["no_path"] == 2 and counts["error"] == 0
    assert counts["ok"] + counts["fallback"] + counts["degenerate"] == 6
    assert counts["tokens"] == sum(table.column("tokens").to_pylist()) > 0
    for row in table.to_pylist():
        assert row["prompt"].startswith("<|im_start|>system")
        assert row["rationale"] and 0 < row["tokens"] <= 16
        generator = json.loads(row["generator"])
        assert generator["backend"] == "hf" and generator["model"] == str(smollm2_path)
        assert generator["seed"] == 7 and generator["max_new_tokens"] == 16 and generator["temperature"] == 0.0
    printed = capsys.readouterr().out
    assert "rows/s" in printed and "tokens/s" in printed and "ETA" in printed
    metrics = read_metrics(out / "metrics.jsonl")
    assert metrics and metrics[-1]["done"] == 6 and metrics[-1]["tokens"] == counts["tokens"]
