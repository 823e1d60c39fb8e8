"""The openai writer against a REAL OpenAI-compatible server on 127.0.0.1: `transformers serve` with the
real SmolLM2-135M-Instruct (a separate process, HTTP over loopback). Retries are real too: the first
request goes out before the server listens and must get through by backing off."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kale_ray.artifacts import Manifest, read_parts
from kale_ray.config.synth import SynthConfig
from kale_ray.ray_utils import free_port
from kale_ray.synth.backends import make_backend
from kale_ray.synth.rows import write_rationales
from kale_ray.synth.stage import run_synth_stage
from tests.synth_support import arc_rows, synth_config, with_paths, write_paths_artifact

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def server(smollm2_path, data_root):
    """Start the server and, at the same moment, send a request that has to retry until it is up."""
    port = free_port()
    cli = shutil.which("transformers", path=str(Path(sys.executable).parent)) or "transformers"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([cli, "serve", "--host", "127.0.0.1", "--port", str(port), str(smollm2_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    endpoint = f"http://127.0.0.1:{port}/v1"
    try:
        cfg = SynthConfig(backend="openai", endpoint=endpoint, max_new_tokens=8, max_retries=10,
                          retry_backoff_s=0.5, timeout_s=120)
        backend = make_backend(cfg, str(smollm2_path), seed=0)
        row = with_paths(arc_rows(data_root, 1)[0], found=True)
        first = write_rationales([row], backend, ki=True, no_path="fallback", max_paths=4, generator={})[0]
        backend.close()
        yield {"endpoint": endpoint, "model": str(smollm2_path), "first": first}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_first_request_backs_off_until_the_server_is_up(server):
    first = server["first"]
    assert first["retries"] > 0  # it was sent before the server listened
    assert first["status"] in ("ok", "degenerate") and first["rationale"] and first["tokens"] > 0


def test_openai_stage_against_a_real_server(ray_local, tmp_path, data_root, server):
    paths_dir = write_paths_artifact(tmp_path / "paths", arc_rows(data_root, 4))
    cfg = synth_config(tmp_path, data_root, "synth.backend=openai", f"synth.endpoint={server['endpoint']}",
                       f"synth.model={server['model']}", "synth.max_new_tokens=12", "synth.concurrency=2")
    out = run_synth_stage(cfg, paths_dir, tmp_path / "synth")
    table = read_parts(out)
    counts = Manifest.read(out).counts
    assert table.num_rows == 4 and counts["error"] == 0
    assert counts["tokens"] == sum(table.column("tokens").to_pylist()) > 0
    for row in table.to_pylist():
        messages = json.loads(row["prompt"])
        assert messages[0]["role"] == "system" and row["question"] in messages[-1]["content"]
        assert row["rationale"] and 0 < row["tokens"] <= 12
        generator = json.loads(row["generator"])
        assert generator["backend"] == "openai" and generator["endpoint"] == server["endpoint"]


def test_a_4xx_is_an_error_row_without_retries(ray_local, tmp_path, data_root, server):
    """The server answers 400 for a model it does not serve: counted per row, the job finishes."""
    paths_dir = write_paths_artifact(tmp_path / "paths", arc_rows(data_root, 4))
    cfg = synth_config(tmp_path, data_root, "synth.backend=openai", f"synth.endpoint={server['endpoint']}",
                       "synth.model=no-such-model", "synth.retry_backoff_s=5")
    out = run_synth_stage(cfg, paths_dir, tmp_path / "synth")
    table = read_parts(out)
    manifest = Manifest.read(out)
    assert manifest.complete and manifest.counts["error"] == 4 and manifest.counts["retries"] == 0
    assert manifest.extra["error_kinds"] == {"endpoint": 4}
    assert all(e.startswith("HTTP 400") for e in table.column("error").to_pylist())


def test_a_timeout_is_retried_then_an_error_row(server, data_root):
    cfg = SynthConfig(backend="openai", endpoint=server["endpoint"], max_new_tokens=64, timeout_s=0.01,
                      max_retries=1, retry_backoff_s=0.01)
    backend = make_backend(cfg, server["model"], seed=0)
    row = with_paths(arc_rows(data_root, 1)[0], found=True)
    out = write_rationales([row], backend, ki=True, no_path="fallback", max_paths=4, generator={})[0]
    backend.close()
    assert out["status"] == "error" and out["retries"] == 1 and "Timeout" in out["error"]


def test_server_down_then_rerun_with_retry_errors(ray_local, tmp_path, data_root, server):
    """Rows that failed while the server was down are counted; a re-run with retry_errors writes them."""
    paths_dir = write_paths_artifact(tmp_path / "paths", arc_rows(data_root, 2))
    common = ["synth.backend=openai", f"synth.model={server['model']}", "synth.max_new_tokens=8"]
    down = synth_config(tmp_path, data_root, *common, f"synth.endpoint=http://127.0.0.1:{free_port()}/v1",
                        "synth.max_retries=1", "synth.retry_backoff_s=0.05")
    out = run_synth_stage(down, paths_dir, tmp_path / "synth")
    assert Manifest.read(out).counts["error"] == 2
    up = synth_config(tmp_path, data_root, *common, f"synth.endpoint={server['endpoint']}", "synth.retry_errors=true")
    run_synth_stage(up, paths_dir, out)
    counts = Manifest.read(out).counts
    assert counts["error"] == 0 and counts["generated"] == 2 and counts["rows"] == 2
    assert len(set(read_parts(out).column("id").to_pylist())) == 2
