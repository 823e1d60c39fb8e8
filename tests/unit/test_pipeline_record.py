"""pipeline.json keeps the seconds of earlier attempts when a resumed pipeline skips a stage."""

import json
import time

from kale_ray.config import load_config
from kale_ray.pipeline import Pipeline


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

