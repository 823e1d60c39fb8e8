"""Shared fixtures: the real data root, the real small model, a tiny random Llama, a local Ray cluster,
an S3-compatible server on 127.0.0.1.

Test folders follow verl/Ray: tests/unit (pure CPU, no Ray), tests/ray (a local cluster started once
per session), tests/gpu (skipped without CUDA).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from kale_ray import env

# The tests run as the embedded default does: offline, local clusters, DeepSpeed on CPU.
for key, value in {**env.DEFAULTS, **env.OFFLINE, **env.LOCAL_CLUSTER, **env.deepspeed_env(False)}.items():
    os.environ.setdefault(key, value)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_root() -> Path:
    from kale_ray.config import default_data_root

    root = default_data_root()
    assert (root / "README.md").is_file(), f"real data not found at {root} (set KALE_DATA)"
    return root


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The real SmolLM2-135M-Instruct, converted once into the user cache (about 30 s the first time)."""
    from kale_ray.engines.registry import prepare_model

    return prepare_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_llama_path(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Path:
    """A randomly initialised 2-layer Llama with the real SmolLM2 tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@dataclass(frozen=True)
class S3Store:
    """A real S3-compatible server (moto's server mode, its own process) with one bucket; `env` is what a
    process needs to reach it (the standard AWS variables), `uri` the session's prefix in the bucket."""

    endpoint: str
    env: dict[str, str]
    uri: str
    mirror_root: Path

    def client(self):  # noqa: ANN201 (boto3 client)
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket="kale", Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


@pytest.fixture(scope="session")
def s3_store(tmp_path_factory: pytest.TempPathFactory):
    """Started once per session (about 2 s); this process and the session's Ray cluster get its
    environment, so stages anywhere reach the store at s3://kale/session/..."""
    import subprocess
    import sys
    import time

    import requests

    from kale_ray.ray_utils import free_port
    from kale_ray.storage import MIRRORS_ENV, ROOT_ENV

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(endpoint, timeout=2)
            break
        except requests.RequestException:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto server did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.2)
    mirror_root = tmp_path_factory.mktemp("mirror")
    uri = "s3://kale/session"
    store_env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                 "AWS_ENDPOINT_URL": endpoint, ROOT_ENV: str(mirror_root),
                 MIRRORS_ENV: json.dumps({str(mirror_root / "s3" / "kale" / "session"): uri})}
    os.environ.update(store_env)
    store = S3Store(endpoint, store_env, uri, mirror_root)
    store.client().create_bucket(Bucket="kale")
    try:
        yield store
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def fault_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where tests arm the worker-side faults of tests/faults.py."""
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="session")
def ray_local(fault_dir: Path, s3_store: S3Store):
    """One local Ray cluster for the session: 2 CPUs, a small object store, no dashboard. Every worker
    runs tests/faults.py's setup hook, so a test can kill a stage actor for real."""
    import ray

    from tests.faults import FAULTS_ENV

    if not ray.is_initialized():
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        ray.init(num_cpus=2, object_store_memory=1_000_000_000, include_dashboard=False, log_to_driver=False,
                 runtime_env={"worker_process_setup_hook": "tests.faults.install",
                              "env_vars": {FAULTS_ENV: str(fault_dir), "PYTHONPATH": path, **s3_store.env}})
    yield ray
    ray.shutdown()
