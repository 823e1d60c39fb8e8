"""`ray job submit` of the pipeline job onto a real `ray start --head` cluster, logs followed."""

import json
import subprocess
from pathlib import Path

from tests.ray.local_head import local_head, ray_bin

REPO = Path(__file__).resolve().parents[2]


def _ray(head, verb: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([ray_bin(), "job", verb, "--address", head.dashboard_url, *args], env=head.env,
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_pipeline_job_submitted_and_followed(tmp_path, data_root):
    workdir = tmp_path / "artifacts"
    with local_head(num_cpus=2) as head:
        submitted = _ray(head, "submit", "--no-wait", "--working-dir", str(REPO),
                         "--runtime-env", "jobs/runtime_env.yaml", "--submission-id", "kale-tiny",
                         "--", "python", "-m", "jobs.pipeline", "--config", "configs/tiny.yaml",
                         f"workdir={workdir}", f"data_root={data_root}")
        assert submitted.returncode == 0, submitted.stderr[-3000:]
        logs = _ray(head, "logs", "kale-tiny", "--follow")
        status = _ray(head, "status", "kale-tiny")
    assert "succeeded" in (status.stdout + status.stderr).lower(), logs.stdout[-5000:]
    out = logs.stdout
    assert "pipeline: stage data" in out and "pipeline: finished" in out, out[-3000:]
    record = json.loads((workdir / "tiny" / "pipeline.json").read_text())
    assert {"model", "data", "kg", "paths", "synth", "train-sft", "train-ka", "eval"} <= set(record["stages"])
    manifest = json.loads((workdir / "tiny" / "data" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["counts"]["train"] == 8
    summary = json.loads((workdir / "tiny" / "results" / "summary.json").read_text())
    assert set(summary) == {"Vanilla", "SFT", "KALE"}
    assert all(summary[m]["arc-easy"]["n"] == 8 for m in summary)
    assert "| KALE |" in (workdir / "tiny" / "results" / "table.md").read_text()
    # Progress lines of the long stages reach `ray job logs --follow`.
    assert "rows/s" in out and "ETA" in out
