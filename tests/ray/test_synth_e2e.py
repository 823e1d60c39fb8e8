"""`kale-ray synth` end to end on a local Ray cluster: ARC-Easy train split -> the real WordNet KG ->
multi-path A* paths -> rationales, with the template writer and then the hf writer (REAL SmolLM2),
the second run reusing the complete data, KG and paths artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kale_ray.artifacts import Manifest, read_parts
from kale_ray.cli import main
from kale_ray.progress import read_metrics

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # the synth command end to end, 40 s

WORDNET = Path("/usr/share/wordnet")


def test_synth_command_end_to_end(ray_local, tmp_path, data_root, smollm2_path, capsys):
    if not (WORDNET / "data.noun").is_file():
        pytest.fail("WordNet database files missing: apt-get install wordnet-base wordnet-sense-index")
    config = tmp_path / "synth.yaml"
    config.write_text(yaml.safe_dump({
        "run_name": "e2e", "workdir": str(tmp_path), "data_root": str(data_root),
        "data": {"benchmark": "arc-easy", "limit_train": 12},
        "kg": {"source": "wordnet", "input": str(WORDNET)},
        "paths": {"workers": 1, "worker_cpus": 0.5, "batch_size": 6, "no_path": "fallback"},
        "synth": {"backend": "template", "workers": 1, "worker_cpus": 0.5, "batch_size": 4},
    }))
    assert main(["synth", "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    run = tmp_path / "e2e"
    paths = Manifest.read(run / "paths")
    synth = Manifest.read(run / "synth")
    assert json.loads(printed[printed.index("{\n"):])["counts"] == synth.counts
    assert paths.counts["rows"] == synth.counts["rows"] == 12
    assert paths.counts["with_path"] > 0  # WordNet links ARC-Easy concepts
    assert synth.counts["with_path"] == paths.counts["with_path"] == synth.counts["ok"]
    # The template verbalises paths only: a row without one gets no rationale from it.
    assert synth.counts["no_rationale"] == 12 - paths.counts["with_path"] and synth.counts["fallback"] == 0
    table = read_parts(run / "synth")
    for row in table.to_pylist():
        if row["ki"]:
            assert row["path_status"] == "ok" and row["path_texts"]
            assert row["path_texts"][0] in row["prompt"] and row["path_texts"][0].rstrip(".") in row["rationale"]
            from kale_ray.synth.prompts import facts

            assert row["rationale"] == " ".join(f if f.endswith(".") else f + "." for f in facts(row, 4))
            assert json.loads(row["paths"]) and row["q_entities"] and row["a_entities"]
        else:
            assert row["status"] == "no_rationale" and row["rationale"] is None

    hf_out = tmp_path / "synth-hf"
    assert main(["synth", "--config", str(config), "--out", str(hf_out), "synth.backend=hf",
                 f"synth.model={smollm2_path}", "synth.max_new_tokens=12"]) == 0
    printed = capsys.readouterr().out
    assert "paths: " in printed and "complete for this config, skipping" in printed
    hf = read_parts(hf_out)
    assert sorted(hf.column("id").to_pylist()) == sorted(table.column("id").to_pylist())
    counts = Manifest.read(hf_out).counts
    assert counts["ki"] == synth.counts["ki"] and counts["error"] == 0
    assert counts["tokens"] == sum(hf.column("tokens").to_pylist()) > 0
    assert counts["ok"] + counts["fallback"] + counts["degenerate"] == 12
    for row in hf.to_pylist():
        assert row["prompt"].startswith("<|im_start|>system") and row["rationale"]
        assert 0 < row["tokens"] <= 12
        generator = json.loads(row["generator"])
        assert generator["backend"] == "hf" and generator["model"] == str(smollm2_path)
        assert generator["seed"] == 0 and generator["max_new_tokens"] == 12 and generator["temperature"] == 0.0
    assert "rows/s" in printed and "tokens/s" in printed and "ETA" in printed
    metrics = read_metrics(hf_out / "metrics.jsonl")
    assert metrics and metrics[-1]["done"] == 12 and metrics[-1]["tokens"] == counts["tokens"]
