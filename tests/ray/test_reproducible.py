"""Two runs of the same small config on one machine give the same per-item predictions: the real
SmolLM2-135M-Instruct through every stage (data sample, WordNet paths, template rationales, SFT and KALE
on 2 DeepSpeed workers for a few steps, evaluation), each run in its own workdir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kale_ray.config import load_config
from kale_ray.pipeline import run_pipeline

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _predictions(results: Path) -> dict[str, list[dict]]:
    return {f"{p.parent.parent.name}/{p.parent.name}": [json.loads(x) for x in p.read_text().splitlines()]
            for p in sorted(results.glob("*/*/predictions.jsonl"))}


def _losses(train: Path) -> dict[str, list[float]]:
    return {m.parent.name: [json.loads(x)["loss"] for x in m.read_text().splitlines() if '"loss"' in x]
            for m in sorted(train.glob("*/metrics.jsonl"))}


@pytest.mark.timeout(3600)  # two full pipelines: about 12 minutes each on a loaded 2-core machine
def test_two_runs_of_one_config_predict_the_same(ray_local, tmp_path, data_root, smollm2_path):
    runs = []
    for name in ("a", "b"):
        cfg = load_config(REPO / "configs" / "tiny.yaml", [
            f"workdir={tmp_path / name}", f"data_root={data_root}", f"model.name_or_path={smollm2_path}",
            "data.limit_train=12", "eval.known_incorrect=false", "eval.vanilla=false", "synth.worker_cpus=0.5"])
        run_pipeline(cfg)
        runs.append(cfg.stage_dir("results").parent)
    a, b = runs
    # The same sampled rows, the same rationales, the same losses step by step, the same predictions.
    for split in ("train", "test"):
        assert (a / "data" / f"{split}.parquet").read_bytes() == (b / "data" / f"{split}.parquet").read_bytes()
    from kale_ray.artifacts import read_parts

    rationales = [read_parts(r / "synth").sort_by("id").select(["id", "rationale", "status"]).to_pylist() for r in runs]
    assert rationales[0] == rationales[1]
    assert _losses(a / "train") == _losses(b / "train") and set(_losses(a / "train")) == {"sft", "ka"}
    preds_a, preds_b = _predictions(a / "results"), _predictions(b / "results")
    assert set(preds_a) == {"SFT/arc-easy", "KALE/arc-easy"} == set(preds_b)
    for key, items in preds_a.items():
        assert len(items) == 8
        assert items == preds_b[key], key  # every field: log-likelihoods, predictions, correctness
