"""Fair arms (train.rows=shared): one small pipeline trains every registered arm, and every arm's train
manifest names the same rows (ids hash, count, the rows themselves in tokens.parquet, in the same order)
and the same optimizer steps; the rows are exactly those with KG paths and a usable rationale in both the
KI and the w/o-KI rationales, written by a real LLM writer (SmolLM2-135M-Instruct through transformers).
The trained model is the tiny random Llama, so seven Ray Train runs stay cheap."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from kale_ray.artifacts import Manifest, read_parts
from kale_ray.config import load_config
from kale_ray.methods import METHODS
from kale_ray.pipeline import run_pipeline
from kale_ray.train.rows import row_ids_hash

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ARMS = [m for m, spec in METHODS.items() if spec.trainer]


def _usable_with_paths(directory: Path) -> set[str]:
    rows = read_parts(directory).to_pylist()
    return {r["id"] for r in rows if r["status"] == "ok" and r["path_status"] == "ok" and (r["rationale"] or "").strip()}


@pytest.mark.timeout(2400)
def test_every_arm_trains_on_the_same_rows_for_the_same_steps(ray_local, tmp_path, data_root, smollm2_path,
                                                               tiny_llama_path):
    cfg = load_config(REPO / "configs" / "tiny.yaml", [
        f"workdir={tmp_path}", f"data_root={data_root}", f"model.name_or_path={tiny_llama_path}",
        "synth.backend=hf", f"synth.model={smollm2_path}", "synth.max_new_tokens=64", "synth.worker_cpus=0.5",
        "synth.no_repeat_ngram_size=4", "synth.repetition_penalty=1.1",
        "data.limit_train=32", f"train.methods=[{', '.join(ARMS)}]", "train.rows=shared", "train.max_steps=null",
        "eval.vanilla=false", "eval.known_incorrect=false", "eval.limit=2"])
    record = run_pipeline(cfg)
    run = cfg.stage_dir("rows").parent
    shared = json.loads((run / "rows" / "rows.json").read_text())["ids"]
    # The shared set, recomputed from the two rationales artifacts: rows with paths, usable in both.
    expected = sorted(_usable_with_paths(run / "synth") & _usable_with_paths(run / "synth-noki"))
    assert shared == expected and len(shared) >= 4, (len(shared), len(expected))
    noki = {r["id"]: r for r in read_parts(run / "synth-noki").to_pylist()}
    assert all(not noki[i]["ki"] and "Facts that may help" not in noki[i]["prompt"] for i in shared)  # no paths shown
    steps = len(shared) // 2 // 2  # tiny.yaml: 2 workers x 2 rows a micro-batch, one epoch
    orders = {}
    for arm in ARMS:
        manifest = Manifest.read(run / "train" / arm)
        assert manifest is not None, arm
        assert manifest.inputs["rows"] == "shared" and manifest.inputs["row_ids_sha256"] == row_ids_hash(shared), arm
        assert manifest.counts["rows_used"] == len(shared) and manifest.counts["optimizer_steps"] == steps, arm
        orders[arm] = pq.read_table(run / "train" / arm / "tokens.parquet").column("id").to_pylist()
        assert sorted(orders[arm]) == shared, arm
        metrics = [json.loads(x) for x in (run / "train" / arm / "metrics.jsonl").read_text().splitlines() if x.strip()]
        assert [m["step"] for m in metrics] == list(range(1, steps + 1)), arm
    assert len({tuple(o) for o in orders.values()}) == 1  # the same data order too (same seed, same rows)
    # Each KA arm trained its own loss over the same rows.
    ka = {arm: Manifest.read(run / "train" / arm).config["ka"] for arm in ARMS}
    assert ka["ka-frozen"]["target"] == "frozen" and ka["ka"]["target"] == "live"
    assert ka["ka-forward"]["direction"] == "forward" and ka["ka"]["direction"] == "reverse"
    assert ka["ka-ce"]["ce_weight"] == 1.0 and ka["ka"]["ce_weight"] == 0.0
    assert record["arms"] == {"rows": len(shared), "row_ids_sha256": row_ids_hash(shared), "optimizer_steps": steps}
