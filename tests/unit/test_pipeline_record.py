"""pipeline.json keeps the seconds of earlier attempts when a resumed pipeline skips a stage."""

import json
import time

from kale_ray.config import load_config
from kale_ray.pipeline import Pipeline, trained_runs


def test_stage_seconds_add_up_over_reruns(tmp_path):
    cfg = load_config(overrides=[f"workdir={tmp_path}", "run_name=r"])
    first = Pipeline(cfg)
    first.stage("train", lambda: time.sleep(0.2) or "done")
    again = Pipeline(cfg)  # a re-run: the stage is now complete and returns at once
    again.stage("train", lambda: "skipped")
    again.stage("eval", lambda: "scored")
    record = json.loads((tmp_path / "r" / "pipeline.json").read_text())["stages"]
    assert record["train"]["attempts"] == 2 and record["train"]["seconds"] >= 0.2
    assert record["train"]["result"] == "skipped" and record["eval"]["attempts"] == 1


def test_trained_runs_one_per_method_and_seed():
    cfg = load_config(overrides=["train.methods=[sft, ka-noki]"])
    assert trained_runs(cfg) == [("sft", "sft", "SFT", 0), ("ka-noki", "ka-noki", "KALE (no KI)", 0)]
    seeded = load_config(overrides=["train.methods=[ka]", "train.seeds=[1, 2]"])
    assert trained_runs(seeded) == [("ka", "ka-s1", "KALE [seed 1]", 1), ("ka", "ka-s2", "KALE [seed 2]", 2)]
