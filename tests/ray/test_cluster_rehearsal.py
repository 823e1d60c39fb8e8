"""The GPU cluster's shape, rehearsed on this machine: a real three-node Ray cluster (a head that takes
no tasks, a CPU worker node, a worker node that advertises two GPUs to Ray's scheduler), each node with
its own temp dir; `ray job submit --working-dir .` of the pipeline on configs/tiny.yaml with its workdir
on an S3-compatible server (moto, 127.0.0.1). A worker node running training is killed mid-stage.

Checked: the job finishes (on the node that is left: Ray Train restarts its worker group), or fails
with a message that says to re-run and a re-submission finishes only what was missing; every stage's
manifest names the nodes that did its work, none of them the head; and the results equal a run of the
same config on a single-node cluster.

About 15 minutes on 2 cores (two pipelines): marked slow, run by `scripts/test.sh slow`. On one
machine the nodes share a filesystem, so their store mirrors are one directory: a fetch a node forgot
shows up in tests/unit/test_storage.py (an empty mirror), not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ray.local_head import cluster_nodes, local_head, ray_bin, worker_node

REPO = Path(__file__).resolve().parents[2]
PREFIX = "session/rehearsal/tiny/"
STAGES_WITH_NODES = ("data", "kg", "paths", "synth", "train/sft", "train/ka", "paths-test", "results")
IN_DRIVER = ("data", "kg")  # benchmark files and WordNet, read in the driver: no model, seconds
# Long enough that a node dies mid-training, with checkpoints to resume from; the same for both runs.
OVERRIDES = ["train.max_steps=8", "train.checkpoint.every=2"]

pytestmark = pytest.mark.slow


def _job(head, verb: str, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([ray_bin(), "job", verb, "--address", head.dashboard_url, *args], env=head.env,
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _submit(head, job_id: str, workdir: str, data_root: Path, mirror: Path, job: str = "jobs.pipeline",
            *args: str) -> None:
    for _ in range(30):  # the job agent may register after the dashboard answers
        out = _job(head, "submit", "--no-wait", "--working-dir", str(REPO), "--runtime-env",
                   "jobs/runtime_env.yaml", "--submission-id", job_id, "--", "env", f"KALE_MIRROR_ROOT={mirror}",
                   "python", "-m", job, *args, "--config", "configs/tiny.yaml", f"workdir={workdir}",
                   f"data_root={data_root}", *OVERRIDES)
        if "No available agent" not in out.stderr:
            break
        time.sleep(2)
    assert out.returncode == 0, out.stderr[-3000:]


def _status(head, job_id: str) -> str:
    reply = _job(head, "status", job_id)
    text = (reply.stdout + reply.stderr).upper()
    for state in ("SUCCEEDED", "FAILED", "STOPPED"):
        if state in text:
            return state
    return "RUNNING"


def _wait(head, job_id: str, until: str | None = None, timeout: float = 1500) -> str:
    """Poll the job's logs until `until` appears (returns "") or the job ends (returns its state)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if until is not None and until in _job(head, "logs", job_id).stdout:
            return ""
        state = _status(head, job_id)
        if state != "RUNNING":
            return state
        time.sleep(3)
    raise AssertionError(f"{job_id}: timed out waiting for {until or 'the end'}")


def _train_worker_nodes(head) -> set[str]:
    import urllib.request

    url = f"{head.dashboard_url}/api/v0/actors?limit=1000&filter_keys=state&filter_predicates=%3D&filter_values=ALIVE"
    with urllib.request.urlopen(url, timeout=10) as reply:
        actors = json.loads(reply.read())["data"]["result"]["result"]
    return {a["node_id"] for a in actors if a.get("class_name") == "RayTrainWorker"}


def _single_node_results(tmp_path: Path, data_root: Path) -> Path:
    """The same config as `python -m jobs.pipeline` with a local one-node cluster of its own."""
    workdir = tmp_path / "single"
    env = {**os.environ, "PYTHONPATH": str(REPO), "KALE_OFFLINE": "1", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "-m", "jobs.pipeline", "--config", "configs/tiny.yaml",
                           f"workdir={workdir}", f"data_root={data_root}", *OVERRIDES],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return workdir / "tiny" / "results"


def _predictions(results: Path) -> dict[str, list]:
    found = {}
    for path in sorted(results.glob("*/*/predictions.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        found[f"{path.parent.parent.name}/{path.parent.name}"] = [(r["id"], r["pred"], r["pred_norm"]) for r in rows]
    return found


def test_pipeline_on_a_three_node_cluster_survives_a_lost_node(tmp_path, data_root, s3_store):
    workdir = f"{s3_store.uri}/rehearsal"
    started = time.monotonic()
    with local_head(num_cpus=0) as head, worker_node(head, num_cpus=2) as cpu, \
            worker_node(head, num_cpus=2, num_gpus=2) as gpu:
        nodes = {n["node_id"]: n["resources_total"] for n in cluster_nodes(head)}
        head_id = next(i for i, r in nodes.items() if "node:__internal_head__" in r)
        assert nodes[gpu.node_id].get("GPU") == 2 and "GPU" not in nodes[cpu.node_id] and "CPU" not in nodes[head_id]
        _submit(head, "rehearsal-1", workdir, data_root, tmp_path / "mirror-1")
        assert _wait(head, "rehearsal-1", until="train[sft]: step 1/") == "", "training never started"
        hosts = _train_worker_nodes(head)
        assert hosts and head_id not in hosts, hosts
        victim = gpu if gpu.node_id in hosts else cpu
        victim.kill()
        print(f"rehearsal: killed node {victim.node_id[:8]} (it ran train workers) "
              f"{time.monotonic() - started:.0f}s in", flush=True)
        state = _wait(head, "rehearsal-1")
        logs = _job(head, "logs", "rehearsal-1").stdout
        if state != "SUCCEEDED":  # the other outcome allowed: a clear failure, then a re-submission
            assert state == "FAILED", logs[-4000:]
            assert "re-run" in logs or "resume" in logs, logs[-4000:]
            _submit(head, "rehearsal-2", workdir, data_root, tmp_path / "mirror-2")
            assert _wait(head, "rehearsal-2") == "SUCCEEDED", _job(head, "logs", "rehearsal-2").stdout[-4000:]
            resumed = _job(head, "logs", "rehearsal-2").stdout
            for stage in ("data", "paths", "synth"):
                assert f"{stage}: " in resumed and "is complete for this config, skipping" in resumed, stage
        seconds = time.monotonic() - started
        # The stage jobs of the README's cluster section (configs/tiny.yaml for configs/gpu.yaml), each on a
        # node that never saw the run: all complete, so each finds that out from the store.
        for i, (job, args, done) in enumerate((
                ("jobs.synthesize", (), ["synth: "]), ("jobs.train", ("--method", "ka"), ["train[ka]: "]),
                ("jobs.evaluate", (), [f"eval: {m}/arc-easy is complete" for m in ("Vanilla", "SFT", "KALE")]))):
            _submit(head, f"stage-{i}", workdir, data_root, tmp_path / f"mirror-stage-{i}", job, *args)
            assert _wait(head, f"stage-{i}") == "SUCCEEDED", _job(head, "logs", f"stage-{i}").stdout[-4000:]
            logs = _job(head, "logs", f"stage-{i}").stdout
            assert all(any(d in line and "complete" in line for line in logs.splitlines()) for d in done), logs[-3000:]
            assert "arc-easy: accuracy" not in logs, "a complete pair was scored again"
        alive = {n["node_id"] for n in cluster_nodes(head) if n["state"] == "ALIVE"}
    print(f"rehearsal: job {state.lower()} after {seconds:.0f}s", flush=True)

    keys = set(s3_store.keys(PREFIX))
    from kale_ray.artifacts import Manifest
    from kale_ray.config import KaleConfig
    from kale_ray.storage import fetch

    run = KaleConfig(workdir=workdir, run_name="tiny").stage_dir("results").parent  # this process's mirror
    workers = {cpu.node_id, gpu.node_id}
    for stage in STAGES_WITH_NODES:
        assert f"{PREFIX}{stage}/manifest.json" in keys, stage
        nodes = set(Manifest.read(run / stage).extra.get("nodes") or [])
        print(f"rehearsal: {stage} ran on {sorted(n[:8] for n in nodes)}", flush=True)
        assert nodes, f"{stage}'s manifest records no node"
        if stage in IN_DRIVER:
            assert nodes == {head_id}, (stage, nodes)
        else:  # every model, and every actor, runs on a worker node
            assert nodes <= workers and head_id not in nodes, (stage, nodes)
    assert victim.node_id not in alive
    fetch(run / "results")
    single = _single_node_results(tmp_path, data_root)
    assert _predictions(run / "results") and _predictions(run / "results") == _predictions(single)
    assert json.loads((run / "results" / "summary.json").read_text()) == json.loads(
        (single / "summary.json").read_text())
