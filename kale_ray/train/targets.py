"""Where a frozen KA target q comes from, without a second model when LoRA makes that possible.

With LoRA the base weights never change, so the initial model is the trained model with its adapters
disabled (peft's `disable_adapter()`): the no-grad target pass runs on the same module and costs no
memory beyond its activations. Full fine-tuning changes every weight, so it keeps a frozen copy of the
initial model (a second model in memory; `train.ka.target=cached` avoids both, see target_cache.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kale_ray.config.train import TrainConfig


class AdaptersOff:
    """Calls the runner's model with its LoRA adapters disabled: the initial model's forward.

    Reads `runner.module` at each call, so it follows whatever wraps the model (DeepSpeed, DDP).
    The base model has no dropout of its own in the models we train (Llama, Qwen); LoRA's dropout sits
    on the adapters, which are off, so train mode gives the initial model's eval-mode logits.
    """

    def __init__(self, runner: Any) -> None:
        self.runner = runner

    def __call__(self, **inputs: Any) -> Any:
        module = self.runner.module
        with module.disable_adapter():
            return module(**inputs)


def frozen_target(method: str, tc: TrainConfig, runner: Any, load_copy: Callable[[], Any]) -> Any:
    """The frozen target's forward (None for a live or cached target, or a method without one);
    `load_copy` loads the frozen copy that full fine-tuning needs (loop.build_model, trainable=False)."""
    if method != "ka" or tc.ka.target != "frozen":
        return None
    if tc.lora.enabled:
        return AdaptersOff(runner)
    return load_copy()
