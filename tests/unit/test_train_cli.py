"""The train command's entry points and their errors for bad input (no Ray, no model needed)."""

import subprocess
import sys
from pathlib import Path

import pytest

from kale_ray.config import ConfigError, load_config
from kale_ray.train.stage import plan_steps, read_training_rows, run_train_stage

REPO = Path(__file__).resolve().parents[2]


def _job(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "jobs.train", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, check=False)


def test_jobs_train_reports_a_missing_input_without_writing(tmp_path):
    # run from a copy-free working dir like `ray job submit --working-dir .` does: the repo root
    proc = _job("--method", "sft", "--data", str(tmp_path / "nowhere"), f"workdir={tmp_path / 'w'}", cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert "train.parquet not found" in proc.stderr
    assert not (tmp_path / "w").exists()


def test_kale_ray_train_is_registered():
    from kale_ray.cli import build_parser

    args = build_parser().parse_args(["train", "--method", "ka", "train.optim.lr=1e-4"])
    assert args.method == "ka" and args.overrides == ["train.optim.lr=1e-4"]


def test_rationale_input_must_be_a_rationales_artifact(tmp_path):
    with pytest.raises(ConfigError, match="not a rationales artifact"):
        read_training_rows("ka", tmp_path)
    with pytest.raises(ConfigError, match="unknown method"):
        run_train_stage(load_config(None, [f"workdir={tmp_path}"]), "dpo", tmp_path)


def test_plan_steps_splits_rows_equally_and_rejects_too_few():
    assert plan_steps(10, 2, 2, 1, 3, None) == (2, 6)  # 5 rows per worker -> 2 steps per epoch
    assert plan_steps(10, 2, 2, 1, 3, 4) == (2, 4)     # max_steps wins over epochs
    with pytest.raises(ConfigError, match="cannot fill one step"):
        plan_steps(3, 2, 2, 1, 1, None)
