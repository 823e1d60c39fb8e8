"""A run whose workers are killed mid-training resumes from its last checkpoint at the right step.

Real failures: a Ray Train worker process gets SIGKILL. The first death is retried by Ray Train's
FailureConfig (max_failures=1) inside the same run; the second exceeds it and the stage fails, as a
crashed job would; re-running the same run name then resumes from the newest checkpoint.
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
from kale_ray.train.stage import run_train_stage
from tests.train_data import arc_rows

pytestmark = pytest.mark.ray


def _metrics(out: Path) -> list[dict]:
    return [m for m in read_metrics(out / "metrics.jsonl") if "step" in m]


def _kill_a_worker_when(out: Path, step: int, resumed_from: int | None, timeout: float = 400) -> int:
    from ray._private.state import actors  # the GCS table; the state API wants a dashboard

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(m["step"] >= step and m["resumed_from"] == resumed_from for m in _metrics(out)):
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


def test_killed_workers_resume_from_the_last_checkpoint(ray_local, data_root, tmp_path):
    data = tmp_path / "data"
    atomic_write_parquet(data / "train.parquet", arc_rows(data_root, 8))
    cfg = load_config(None, [
        f"workdir={tmp_path}", "run_name=resume", "train.workers=2", "train.cpus_per_worker=0.5",
        "train.micro_batch_size=2", "train.max_length=96", "train.lr=1e-3", "train.lr_schedule=constant",
        "train.max_steps=7", "train.checkpoint_every=2", "train.max_failures=1", "train.shuffle=false",
        "train.export=false"])
    out = cfg.stage_dir("train") / "sft"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_train_stage(cfg, "sft", data)
        except BaseException as err:  # noqa: BLE001 (the test inspects it)
            errors.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    _kill_a_worker_when(out, 3, None)          # after step 3; the newest checkpoint is step 2
    _kill_a_worker_when(out, 5, 2)             # the retry resumed at 3; now past the step-4 checkpoint
    thread.join(timeout=600)
    assert not thread.is_alive()
    assert errors and "training failed" in str(errors[0])  # the second death exceeded max_failures=1
    assert not (out / "manifest.json").exists()

    final = run_train_stage(cfg, "sft", data)  # the re-run of the same run name
    assert final == out and Manifest.read(out).complete
    runs = _by_attempt(_metrics(out))
    print({k: sorted(v) for k, v in runs.items()})
    assert set(runs) == {None, 2, 4}
    assert min(runs[None]) == 1 and min(runs[2]) == 3 and min(runs[4]) == 5
    assert max(runs[4]) == 7
    # the same state and the same data position give the same loss as before the kill
    for resumed, later in ((2, runs[2]), (4, runs[4])):
        earlier = runs[None] if resumed == 2 else runs[2]
        step = resumed + 1
        if step in earlier:
            assert later[step] == pytest.approx(earlier[step], rel=1e-4)
    assert runs[2][3] == pytest.approx(runs[None][3], rel=1e-4)  # step 3 ran before the first kill
