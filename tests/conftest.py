"""Shared fixtures: the real data root, the real small model, a tiny random Llama, a local Ray cluster.

Test folders follow verl/Ray: tests/unit (pure CPU, no Ray), tests/ray (a local cluster started once
per session), tests/gpu (skipped without CUDA).
"""

from __future__ import annotations

import os
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


@pytest.fixture(scope="session")
def fault_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where tests arm the worker-side faults of tests/faults.py."""
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="session")
def ray_local(fault_dir: Path):
    """One local Ray cluster for the session: 2 CPUs, a small object store, no dashboard. Every worker
    runs tests/faults.py's setup hook, so a test can kill a stage actor for real."""
    import ray

    from tests.faults import FAULTS_ENV

    if not ray.is_initialized():
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        ray.init(num_cpus=2, object_store_memory=1_000_000_000, include_dashboard=False, log_to_driver=False,
                 runtime_env={"worker_process_setup_hook": "tests.faults.install",
                              "env_vars": {FAULTS_ENV: str(fault_dir), "PYTHONPATH": path}})
    yield ray
    ray.shutdown()
