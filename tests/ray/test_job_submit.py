"""`ray job submit` of the pipeline onto a real `ray start --head` cluster, logs followed; the first
submission is stopped mid-pipeline (its driver dies) and a re-submission finishes the rest.

The whole pipeline twice (about 11 minutes on 2 cores): marked slow, run by `scripts/test.sh slow`."""

import json
import subprocess
import time
from pathlib import Path

import pytest

from kale_ray.artifacts import read_parts
from tests.ray.local_head import local_head, ray_bin

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _ray(head, verb: str, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([ray_bin(), "job", verb, "--address", head.dashboard_url, *args], env=head.env,
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _submit(head, job_id: str, workdir: Path, data_root: Path) -> None:
    # The dashboard can answer before the node's job agent has registered: Ray then says so and
    # asks to try again later.
    for _ in range(30):
        out = _ray(head, "submit", "--no-wait", "--working-dir", str(REPO), "--runtime-env",
                   "jobs/runtime_env.yaml", "--submission-id", job_id, "--", "python", "-m", "jobs.pipeline",
                   "--config", "configs/tiny.yaml", f"workdir={workdir}", f"data_root={data_root}")
        if "No available agent" not in out.stderr:
            break
        time.sleep(2)
    assert out.returncode == 0, out.stderr[-3000:]


def _wait_for_line(head, job_id: str, text: str, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in _ray(head, "logs", job_id).stdout:
            return
        time.sleep(3)
    raise AssertionError(f"{job_id} never printed {text!r}")


def test_pipeline_job_resubmitted_after_its_driver_died(tmp_path, data_root):
    workdir = tmp_path / "artifacts"
    run = workdir / "tiny"
    with local_head(num_cpus=2) as head:
        _submit(head, "kale-tiny-1", workdir, data_root)
        _wait_for_line(head, "kale-tiny-1", "pipeline: stage train-sft ...")
        stopped = _ray(head, "stop", "kale-tiny-1")
        assert stopped.returncode == 0, stopped.stderr[-2000:]
        assert not (run / "results" / "summary.json").exists()

        _submit(head, "kale-tiny-2", workdir, data_root)
        logs = _ray(head, "logs", "kale-tiny-2", "--follow").stdout
        status = _ray(head, "status", "kale-tiny-2")
    assert "succeeded" in (status.stdout + status.stderr).lower(), logs[-5000:]
    # The re-submission reused what the first run finished and did only the rest.
    for stage in ("data", "paths", "synth"):
        assert f"{stage}: " in logs and "is complete for this config, skipping" in logs, stage
    assert "pipeline: finished" in logs and "rows/s" in logs and "ETA" in logs
    record = json.loads((run / "pipeline.json").read_text())
    assert {"model", "data", "kg", "paths", "synth", "train-sft", "train-ka", "eval"} <= set(record["stages"])
    rationales = read_parts(run / "synth").column("id").to_pylist()
    assert len(rationales) == len(set(rationales)) == 8, "no duplicates, no losses"
    summary = json.loads((run / "results" / "summary.json").read_text())
    assert set(summary) == {"Vanilla", "SFT", "KALE"}
    assert all(summary[m]["arc-easy"]["n"] == 8 for m in summary)
    assert "| KALE |" in (run / "results" / "table.md").read_text()
