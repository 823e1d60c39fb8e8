"""transformers batched generation (HFEngine), on CPU or GPU: the reference writer and the CPU
fallback of vLLM."""

from __future__ import annotations

from typing import Any

from kale_ray.engines.base import Generation as EngineGeneration
from kale_ray.synth.backends.engine import EngineBackend


class HFBackend(EngineBackend):
    name = "hf"

    def __init__(self, cfg: Any, model_path: str, seed: int, dtype: str = "float32") -> None:
        from kale_ray.engines.hf import HFEngine

        super().__init__(cfg, model_path, seed, HFEngine(model_path, dtype=dtype, device="auto"))

    def text(self, gen: EngineGeneration) -> str:
        """Without special tokens, as vLLM's detokenizer gives it (the engine's text keeps any but the EOS)."""
        return self.engine.tokenizer.decode(gen.ids, skip_special_tokens=True)
