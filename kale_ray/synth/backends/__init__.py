"""Rationale writers behind one interface (`Backend`), chosen by `synth.backend`; heavy imports stay lazy."""

from __future__ import annotations

from typing import Any

from kale_ray.synth.backends.base import Backend, Generation, Request

__all__ = ["Backend", "Generation", "Request", "make_backend"]


def make_backend(cfg: Any, model: str, seed: int, dtype: str = "float32") -> Backend:
    """`cfg` is a SynthConfig; `model` a local checkpoint (hf) or the served model name (openai)."""
    if cfg.backend == "template":
        from kale_ray.synth.backends.template import TemplateBackend

        return TemplateBackend(cfg.max_paths_in_prompt)
    if cfg.backend == "hf":
        from kale_ray.synth.backends.hf import HFBackend

        return HFBackend(cfg, model, seed, dtype)
    if cfg.backend == "openai":
        from kale_ray.synth.backends.openai_http import OpenAIBackend

        return OpenAIBackend(cfg, model, seed)
    if cfg.backend == "vllm":
        raise ValueError("the vllm writer runs on Ray's vLLM processor (kale_ray.synth.ray_llm), not as an actor's "
                         "backend")
    raise ValueError(f"unknown synth backend {cfg.backend!r}")
