"""ZeRO-3 partitioned loading and CPU offload on 2 gloo CPU workers through Ray Train, with the real SmolLM2.

Under ZeRO-3 every worker loads only its partition (transformers' from_pretrained under deepspeed.zero.Init):
each rank's memory report (<run>/memory/rank-N.json) holds about half the elements of the model, and the
three steps' losses match the ZeRO-2 run's, for LoRA and for full fine-tuning with optimizer and
parameter offload. Minutes of CPU per run: slow suite.
"""

from __future__ import annotations

import json

import pytest

from tests.ray.test_train_runs import _losses, ka_zero2, rationale_dir, rows, train, workdir  # noqa: F401

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _ranks(out) -> list[dict]:
    return [json.loads((out / "memory" / f"rank-{r}.json").read_text()) for r in (0, 1)]


def _partitioned(out) -> None:
    for rank in _ranks(out):
        params = rank["params"]
        assert params["total"] > 130_000_000  # SmolLM2's 135M elements (plus LoRA's), counted as ds_numel
        assert params["local"] <= 0.55 * params["total"], rank  # this rank holds its half, not the model


def test_zero3_lora_loads_partitioned_and_agrees_with_zero2(ray_local, workdir, rationale_dir, ka_zero2):  # noqa: F811
    _, zero2 = ka_zero2
    out, zero3 = train(workdir, "ka-zero3-part", "ka", rationale_dir, "train.zero_stage=3", "train.export=false")
    _partitioned(out)
    assert _losses(zero3) == pytest.approx(_losses(zero2), rel=1e-3)


def test_zero3_full_finetuning_with_offload_agrees_with_zero2(ray_local, workdir, rationale_dir):  # noqa: F811
    full = ["train.lora.enabled=false", "train.optim.lr=1e-5", "train.export=false"]
    z2_out, zero2 = train(workdir, "full-zero2", "ka", rationale_dir, *full)
    out, zero3 = train(workdir, "full-zero3-offload", "ka", rationale_dir, *full, "train.zero_stage=3",
                       "train.offload_optimizer=true", "train.offload_params=true")
    _partitioned(out)
    assert all(r["params"]["local"] == r["params"]["total"] for r in _ranks(z2_out))  # ZeRO-2 keeps it whole
    assert _losses(zero3) == pytest.approx(_losses(zero2), rel=1e-3)
    assert _losses(zero3)[-1] < _losses(zero3)[0]
