"""train.lora.targets reaches peft: a list wraps the named modules, "all-linear" every linear layer of the
blocks (not the output head)."""

import pytest

from kale_ray.config.train import LoraConfig, TrainConfig
from kale_ray.train.loop import build_model


def _wrapped(model) -> set[str]:  # noqa: ANN001
    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if hasattr(module, "lora_A")}


@pytest.mark.parametrize("targets, expected", [
    (["q_proj", "v_proj"], {"q_proj", "v_proj"}),
    ("all-linear", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
])
def test_lora_targets(tiny_llama_path, targets, expected):
    model = build_model(str(tiny_llama_path), TrainConfig(lora=LoraConfig(targets=targets, r=4)))
    assert _wrapped(model) == expected
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
