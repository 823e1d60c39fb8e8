"""`ray job submit` of the pipeline onto a real `ray start --head` cluster, logs followed, its workdir
on an S3-compatible server (moto, 127.0.0.1): the first submission is stopped mid-pipeline (its driver
dies), and a re-submission whose node-local mirror is empty (a new head node's disk) finishes the rest
from what the store holds.

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


def _submit(head, job_id: str, workdir: str, data_root: Path, mirror: Path) -> None:
    # The dashboard can answer before the node's job agent has registered: Ray then says so and
    # asks to try again later.
    for _ in range(30):
        out = _ray(head, "submit", "--no-wait", "--working-dir", str(REPO), "--runtime-env",
                   "jobs/runtime_env.yaml", "--submission-id", job_id, "--", "env", f"KALE_MIRROR_ROOT={mirror}",
                   "python", "-m", "jobs.pipeline", "--config", "configs/tiny.yaml", f"workdir={workdir}",
                   f"data_root={data_root}")
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


def test_pipeline_job_resubmitted_after_its_driver_died(tmp_path, data_root, s3_store):
    workdir = f"{s3_store.uri}/job-submit"
    first, second = tmp_path / "mirror-1", tmp_path / "mirror-2"
    prefix = "session/job-submit/tiny/"
    run = second / "s3" / "kale" / prefix
    with local_head(num_cpus=2) as head:
        _submit(head, "kale-tiny-1", workdir, data_root, first)
        _wait_for_line(head, "kale-tiny-1", "pipeline: stage train-sft ...")
        stopped = _ray(head, "stop", "kale-tiny-1")
        assert stopped.returncode == 0, stopped.stderr[-2000:]
        assert prefix + "synth/manifest.json" in s3_store.keys(prefix)
        assert prefix + "results/summary.json" not in s3_store.keys(prefix)

        _submit(head, "kale-tiny-2", workdir, data_root, second)
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
    # Everything the second driver used or made is in the store; its mirror holds no file the store lacks.
    keys = set(s3_store.keys(prefix))
    assert {prefix + f"{stage}/manifest.json" for stage in ("data", "kg", "paths", "synth", "train/sft", "train/ka",
                                                             "results")} <= keys
    mirrored = {prefix + p.relative_to(run).as_posix() for p in run.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(run).parts)}
    assert mirrored <= keys, sorted(mirrored - keys)[:10]
