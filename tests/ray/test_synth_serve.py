"""The openai writer against the project's own Serve app (real Ray Serve over HTTP on 127.0.0.1, real
SmolLM2-135M-Instruct): the client's API key from the environment, and real 503 + Retry-After answers from the app's
bounded queue that the writer must back off from and get through."""

from __future__ import annotations

import json
import os

import pytest

from kale_ray.artifacts import Manifest, read_parts
from kale_ray.config import load_config
from kale_ray.ray_utils import free_port
from kale_ray.synth.stage import run_synth_stage
from tests.ray.serve_helpers import running_app, write_key_file
from tests.synth_support import arc_rows, synth_config, write_paths_artifact

pytestmark = pytest.mark.ray

KEY_ENV, KEY = "KALE_SYNTH_TEST_SERVE_KEY", "synth-test-key"
WRONG_ENV = "KALE_SYNTH_TEST_WRONG_KEY"


@pytest.fixture(scope="module")
def endpoint(ray_local, tmp_path_factory, smollm2_path):
    os.environ[KEY_ENV] = KEY
    os.environ[WRONG_ENV] = "not-the-key"
    models = json.dumps([{"name": "smollm2", "path": str(smollm2_path)}])
    key_file = write_key_file(tmp_path_factory.mktemp("key"), KEY)  # the app's key; clients read KEY_ENV
    cfg = load_config(None, [f"serve.models={models}", f"serve.port={free_port()}", "serve.replica_cpus=0.5",
                             f"serve.api_key_file={key_file}", "serve.max_queued=1", "serve.retry_after_s=1"])
    with running_app(cfg, "synthtest") as base:
        yield base + "/v1"


def test_writer_backs_off_from_a_full_queue_and_gets_every_row(ray_local, tmp_path, data_root, endpoint):
    paths_dir = write_paths_artifact(tmp_path / "paths", arc_rows(data_root, 6))
    cfg = synth_config(tmp_path, data_root, "synth.backend=openai", f"synth.endpoint={endpoint}",
                       "synth.model=smollm2", f"synth.api_key_env={KEY_ENV}", "synth.max_new_tokens=8",
                       "synth.batch_size=6", "synth.concurrency=6", "synth.max_retries=10",
                       "synth.retry_backoff_s=0.2")
    out = run_synth_stage(cfg, paths_dir, tmp_path / "synth")
    counts = Manifest.read(out).counts
    assert counts["rows"] == 6 and counts["error"] == 0
    assert counts["retries"] > 0  # six requests at once against a queue of one: 503s, then retries
    table = read_parts(out)
    assert all(r["rationale"] and 0 < r["tokens"] <= 8 for r in table.to_pylist())


def test_a_wrong_api_key_is_an_error_row_per_request(ray_local, tmp_path, data_root, endpoint):
    paths_dir = write_paths_artifact(tmp_path / "paths", arc_rows(data_root, 3))
    cfg = synth_config(tmp_path, data_root, "synth.backend=openai", f"synth.endpoint={endpoint}",
                       "synth.model=smollm2", f"synth.api_key_env={WRONG_ENV}", "synth.retry_backoff_s=5")
    out = run_synth_stage(cfg, paths_dir, tmp_path / "synth")
    counts = Manifest.read(out).counts
    assert counts["error"] == 3 and counts["retries"] == 0
    assert all(e.startswith("HTTP 401") for e in read_parts(out).column("error").to_pylist())
