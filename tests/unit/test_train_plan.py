"""`kale-ray train plan`: bytes per worker from config.json alone. Its parameter count is the real
checkpoint's, it says configs/gpu.yaml fits the 40 GB GPUs only with its levers, and on CPU it is within
25% of the trainer's measured peak memory (slow: a real SmolLM2 step per lever in a fresh process)."""

import json
from pathlib import Path

import pytest

from kale_ray.cli import main
from kale_ray.config import load_config
from kale_ray.config.train import TrainConfig
from kale_ray.train.plan import ModelShape, make_plan, read_model_config
from tests.train_memory import measure_in_subprocess

REPO = Path(__file__).resolve().parents[2]
QWEN = REPO / "tests" / "fixtures" / "qwen2.5-7b-instruct" / "config.json"  # Qwen2.5-7B-Instruct's, as published


def test_parameter_count_is_the_checkpoints(smollm2_path):
    from safetensors import safe_open

    shape = ModelShape.from_config(read_model_config(str(smollm2_path)))
    real = 0
    for file in Path(smollm2_path).glob("*.safetensors"):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                n = 1
                for dim in f.get_slice(key).get_shape():
                    n *= dim
                real += n
    assert shape.params() == real
    assert ModelShape.from_config(json.loads(QWEN.read_text())).params() == pytest.approx(7.62e9, rel=0.005)


def test_zero3_and_offload_divide_what_they_should():
    shape = ModelShape.from_config(json.loads(QWEN.read_text()))
    full = {"lora": {"enabled": False}, "workers": 8, "precision": "bf16", "gradient_checkpointing": True}
    z2 = make_plan(shape, TrainConfig.model_validate(full))
    z3 = make_plan(shape, TrainConfig.model_validate({**full, "zero_stage": 3}))
    off = make_plan(shape, TrainConfig.model_validate({**full, "zero_stage": 3, "offload_optimizer": True}))
    assert z3.rows["weights"] == pytest.approx(z2.rows["weights"] / 8, rel=1e-6)
    assert z2.rows["optimizer states"] == z3.rows["optimizer states"] > 0
    assert off.rows["optimizer states"] == 0 and off.cpu_bytes == z3.rows["optimizer states"]
    assert z2.activations_full > 5 * z2.activations_checkpointed


def test_cli_plan_says_whether_gpu_yaml_fits(capsys):
    args = ["train", "plan", "--config", str(REPO / "configs" / "gpu.yaml"), "--model-config", str(QWEN)]
    assert main(args) == 0
    out = capsys.readouterr().out
    for row in ("weights", "gradients", "optimizer states", "activations", "ka target pass"):
        assert row in out
    assert "8 GPU workers, ZeRO stage 2" in out and "train.gpu_memory_gb=40: fits" in out
    assert main([*args, "train.gradient_checkpointing=false"]) == 1  # 41 GB of activations alone
    assert "does NOT fit" in capsys.readouterr().out


def test_a_hub_id_not_in_the_local_cache_is_a_clear_error():
    with pytest.raises(ValueError, match="no config.json for model"):
        read_model_config("nobody/no-such-model-anywhere")


@pytest.mark.slow
@pytest.mark.parametrize("levers", [{}, {"gradient_checkpointing": True}, {"lora": {"enabled": False}}])
def test_plan_is_within_25_percent_of_the_measured_peak(smollm2_path, levers):
    train = {"micro_batch_size": 1, "max_length": 512, **levers}
    measured = measure_in_subprocess(str(smollm2_path), train, "ka")
    cfg = load_config(None, [])
    shape = ModelShape.from_config(read_model_config(str(smollm2_path)))
    plan = make_plan(shape, TrainConfig.model_validate({**train, "method": "ka", "strategy": "ddp", "workers": 1}),
                     attn_implementation=cfg.model.attn_implementation)
    assert plan.total == pytest.approx(measured["peak"], rel=0.25)
