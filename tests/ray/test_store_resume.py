"""`kale-ray synth` (data -> KG -> paths -> rationales) and `kale-ray eval` with their workdir on an
S3-compatible server (moto, 127.0.0.1), then again from an empty mirror: a node that never saw the run
finds every stage complete in the store (the eval stage the same held-out items) and downloads no KG
to find out. Each manifest names the node that did its work."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from kale_ray.artifacts import Manifest, read_parts
from kale_ray.cli import main
from kale_ray.config import KaleConfig

pytestmark = pytest.mark.ray

WORDNET = Path("/usr/share/wordnet")


def test_stages_resume_from_the_store_on_an_empty_mirror(ray_local, tmp_path, data_root, s3_store, capsys):
    workdir = f"{s3_store.uri}/store-resume"
    config = tmp_path / "synth.yaml"
    config.write_text(yaml.safe_dump({
        "run_name": "r", "workdir": workdir, "data_root": str(data_root),
        "data": {"benchmark": "arc-easy", "limit_train": 8},
        "kg": {"source": "wordnet", "input": str(WORDNET)},
        "paths": {"workers": 1, "worker_cpus": 0.5, "batch_size": 4},
        "synth": {"backend": "template", "workers": 1, "worker_cpus": 0.5, "batch_size": 4},
        "train": {"methods": []}, "eval": {"engine": "local", "limit": 2, "known_incorrect": False},
    }))
    assert main(["synth", "--config", str(config)]) == 0
    assert main(["eval", "--config", str(config)]) == 0
    first = capsys.readouterr().out
    assert "is complete" not in first
    run = KaleConfig(workdir=workdir, run_name="r").stage_dir("synth").parent
    rationales = read_parts(run / "synth").column("id").to_pylist()
    node = ray_local.get_runtime_context().get_node_id()
    for stage in ("paths", "synth", "results"):
        assert Manifest.read(run / stage).extra["nodes"] == [node], stage
    keys = s3_store.keys("session/store-resume/r/")
    assert {f"session/store-resume/r/{s}/manifest.json" for s in ("data", "kg", "paths", "synth")} <= set(keys)

    shutil.rmtree(run)  # another node: nothing of the run on its disk
    assert main(["synth", "--config", str(config)]) == 0
    assert main(["eval", "--config", str(config)]) == 0
    again = capsys.readouterr().out
    for stage in ("data", "kg", "paths", "synth"):
        assert f"{stage}: {run / stage} is complete" in again, stage
    assert "eval: Vanilla/arc-easy is complete, skipping" in again and "arc-easy: accuracy" not in again
    assert not (run / "kg" / "arrays").exists(), "the driver checked the KG in the store, not on its disk"
    assert read_parts(run / "synth").column("id").to_pylist() == rationales
