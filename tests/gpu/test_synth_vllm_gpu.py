"""The vllm backend on a GPU node: Ray's vLLM processor (ray.data.llm), one engine replica on a
{GPU: 1, CPU: synth.worker_cpus} bundle. Needs CUDA and the `gpu` extra (vLLM through ray[llm]); skipped
elsewhere. Not yet run: no GPU was lent to the sessions that wrote it (the CPU path is
tests/ray/test_synth_vllm_cpu.py)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from kale_ray.artifacts import Manifest, read_parts
from kale_ray.synth.stage import run_synth_stage
from tests.synth_support import arc_rows, synth_config, write_paths_artifact

pytestmark = [pytest.mark.gpu, pytest.mark.ray]


def _cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda() or importlib.util.find_spec("vllm") is None, reason="needs CUDA and vllm")
def test_vllm_stage_on_a_gpu(ray_local, tmp_path, data_root, smollm2_path):
    paths_dir = write_paths_artifact(tmp_path / "paths", arc_rows(data_root, 8))
    cfg = synth_config(tmp_path, data_root, "synth.backend=vllm", f"synth.model={smollm2_path}",
                       "synth.worker_gpus=1", "synth.max_new_tokens=32", "model.dtype=bfloat16",
                       'synth.vllm_engine_args={"gpu_memory_utilization": 0.3}')
    out = run_synth_stage(cfg, paths_dir, tmp_path / "synth")
    counts = Manifest.read(out).counts
    assert counts["rows"] == 8 and counts["error"] == 0 and counts["tokens"] > 0
    assert all(json.loads(g)["engine"] == "ray.data.llm" for g in read_parts(out).column("generator").to_pylist())
