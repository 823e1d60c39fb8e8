"""A run whose workers are killed mid-training resumes from its last checkpoint at the right step.

Real failures: a Ray Train worker process gets SIGKILL. With max_failures=0 the stage fails, as a
crashed job would, and re-running the same run name resumes from the newest checkpoint; with
max_failures=1 Ray Train's FailureConfig restarts the workers from it inside the same run.
8 rows / (2 workers x 2 rows) = 2 steps per epoch, so a resumed step also lands mid-data.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from kale_ray.artifacts import Manifest, atomic_write_parquet
from kale_ray.config import load_config
from kale_ray.progress import read_metrics
from kale_ray.train.checkpoint import checkpoint_dir_name
from kale_ray.train.stage import run_train_stage
from kale_ray.train.trainer import STORAGE_NAME
from tests.train_data import arc_rows

pytestmark = pytest.mark.ray


def _metrics(out: Path) -> list[dict]:
    return [m for m in read_metrics(out / "metrics.jsonl") if "step" in m]


def _registered(out: Path, checkpoint_step: int) -> bool:
    """Ray Train's controller has recorded this checkpoint in its snapshot: a re-run will find it.
    (A worker's report is registered asynchronously; a kill before that loses the checkpoint, as a
    real crash would, and the run rightly starts over.)"""
    from ray.train.v2._internal.constants import CHECKPOINT_MANAGER_SNAPSHOT_FILENAME

    snapshot = out / STORAGE_NAME / CHECKPOINT_MANAGER_SNAPSHOT_FILENAME
    return snapshot.is_file() and checkpoint_dir_name(checkpoint_step) in snapshot.read_text()


def _kill_a_worker_when(out: Path, step: int, resumed_from: int | None, checkpoint_step: int,
                        timeout: float = 400) -> int:
    from ray._private.state import actors  # the GCS table; the state API wants a dashboard

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(m["step"] >= step and m["resumed_from"] == resumed_from for m in _metrics(out)) \
                and _registered(out, checkpoint_step):
            alive = actors(actor_state_name="ALIVE").values()
            pid = max(int(a["Pid"]) for a in alive if a["ActorClassName"] == "RayTrainWorker")
            os.kill(pid, signal.SIGKILL)
            return pid
        time.sleep(0.2)
    raise AssertionError(f"step {step} (resumed_from={resumed_from}) never came")


def _by_attempt(metrics: list[dict]) -> dict[int | None, dict[int, float]]:
    runs: dict[int | None, dict[int, float]] = {}
    for m in metrics:
        runs.setdefault(m["resumed_from"], {})[m["step"]] = m["loss"]
    return runs


def _start(cfg, data: Path) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_train_stage(cfg, "sft", data)
        except BaseException as err:  # noqa: BLE001 (the test inspects it)
            errors.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def _config(data_root: Path, tmp_path: Path, max_failures: int):
    data = tmp_path / "data"
    atomic_write_parquet(data / "train.parquet", arc_rows(data_root, 8))
    cfg = load_config(None, [
        f"workdir={tmp_path}", "run_name=resume", "train.workers=2", "train.cpus_per_worker=0.5",
        "train.micro_batch_size=2", "train.max_length=96", "train.optim.lr=1e-3", "train.optim.schedule=constant",
        "train.max_steps=5", "train.checkpoint.every=2", f"train.max_failures={max_failures}",
        "train.shuffle=false", "train.export=false"])
    return cfg, data, cfg.stage_dir("train") / "sft"


def _assert_resumed_at_step_3(out: Path) -> None:
    runs = _by_attempt(_metrics(out))
    assert set(runs) == {None, 2}, {k: sorted(v) for k, v in runs.items()}
    assert min(runs[None]) == 1 and min(runs[2]) == 3 and max(runs[2]) == 5
    # step 3 ran before the kill; the same state at the same data position gives the same loss
    assert runs[2][3] == pytest.approx(runs[None][3], rel=1e-4)
    assert Manifest.read(out).complete


@pytest.mark.slow  # 100 s: in `scripts/test.sh slow`
def test_a_killed_run_resumes_from_its_last_checkpoint_when_re_run(ray_local, data_root, tmp_path):
    cfg, data, out = _config(data_root, tmp_path, max_failures=0)
    thread, errors = _start(cfg, data)
    _kill_a_worker_when(out, 3, None, checkpoint_step=2)  # after step 3; the newest checkpoint is step 2
    thread.join(timeout=600)
    assert not thread.is_alive()
    assert errors and "training failed" in str(errors[0]) and "re-run" in str(errors[0])
    assert not (out / "manifest.json").exists()
    assert run_train_stage(cfg, "sft", data) == out  # the re-run of the same run name
    _assert_resumed_at_step_3(out)


@pytest.mark.slow
def test_failure_config_restarts_a_dead_worker_from_the_checkpoint(ray_local, data_root, tmp_path):
    cfg, data, out = _config(data_root, tmp_path, max_failures=1)
    thread, errors = _start(cfg, data)
    _kill_a_worker_when(out, 3, None, checkpoint_step=2)
    thread.join(timeout=600)
    assert not thread.is_alive() and not errors  # retried inside the same run
    _assert_resumed_at_step_3(out)
