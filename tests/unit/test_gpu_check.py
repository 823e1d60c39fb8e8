"""bench/gpu_check.py, the script a session with a lent GPU runs: it must skip cleanly without CUDA,
and its comparison must run (here on a CPU in bf16, against the CPU fp32 reference)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"


def _run(*args: str, **env_vars: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parents[1]), **env_vars}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=900, check=False)


def test_without_cuda_it_says_so_and_exits_0():
    done = _run(CUDA_VISIBLE_DEVICES="")  # no device visible, also on a GPU machine
    assert done.returncode == 0, done.stderr
    assert "no CUDA device here; skipped" in done.stdout


@pytest.mark.slow
def test_the_comparison_runs_on_a_cpu_in_bf16(smollm2_path):
    done = _run("--device", "cpu", "--model", str(smollm2_path))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout[done.stdout.index("{"):])
    scoring, step = result["scoring"], result["ka_step"]
    assert scoring["options"] == 24 and 0 < scoring["max_abs_loglikelihood_diff"] < 2.0
    assert step["loss_abs_diff"] < 0.1 * abs(step["loss_reference"]) + 0.05  # bf16 moves it, not far
    assert step["path"] == "kale_ray.train.loop.train_step"  # pydantic and pyarrow are here
