"""Loading causal LMs and their tokenizers: the one place that turns a model spec into weights.

A spec is a local checkpoint, a registered name (prepared once through the registry) or a hub id, or a
bare LoRA adapter directory (`adapter_config.json`): its base is read from that file and loaded under
the adapter, named `BARE_ADAPTER`. Training, serving, evaluation, probing and synthesis all load here,
so a checkpoint means the same weights, dtype and mode everywhere. torch, transformers and peft are
imported inside the functions only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kale_ray import storage
from kale_ray.engines.registry import resolve_model

BARE_ADAPTER = "adapter"  # the name a bare adapter directory's LoRA gets on its base


@dataclass(frozen=True)
class Checkpoint:
    """Where a model's weights come from: a base checkpoint (directory or hub id), the LoRA adapters
    (name -> directory) to load on it, and the adapter that stands for the model itself (a bare
    adapter directory's own: the spec names the tuned model, never its base alone)."""

    base: str
    adapters: dict[str, str] = field(default_factory=dict)
    default_adapter: str | None = None


def resolve_checkpoint(spec: str | Path | Checkpoint, adapters: Mapping[str, str] | None = None,
                       cache_dir: Path | None = None) -> Checkpoint:
    """A spec (see the module doc) plus extra adapters -> the base to load and every adapter on it."""
    if isinstance(spec, Checkpoint):
        return Checkpoint(spec.base, {**spec.adapters, **(adapters or {})}, spec.default_adapter)
    path = resolve_model(str(spec), cache_dir)
    storage.fetch(path)  # a model exported into an object-store workdir: to this node's mirror first
    found: dict[str, str] = {}
    adapter_config = Path(path) / "adapter_config.json"
    if adapter_config.is_file():
        base = json.loads(adapter_config.read_text())["base_model_name_or_path"]
        found, path = {BARE_ADAPTER: str(path)}, resolve_model(base, cache_dir)
        storage.fetch(path)
    for adapter in (adapters or {}).values():
        storage.fetch(adapter)
    duplicate = set(found) & set(adapters or {})
    if duplicate:
        raise ValueError(f"adapter name {sorted(duplicate)} is taken by the bare adapter {spec}")
    return Checkpoint(str(path), {**found, **(adapters or {})}, BARE_ADAPTER if found else None)


def torch_dtype(dtype: str) -> Any:
    """"float32", "bfloat16", ... -> the torch dtype; "auto" (the checkpoint's own) stays a string."""
    import torch

    if dtype == "auto":
        return dtype
    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; expected e.g. float32, bfloat16, float16 or auto")
    return value


def pick_device(device: str = "auto") -> str:
    """"auto" -> cuda when this process sees a GPU, else cpu; anything else unchanged."""
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_attn_implementation(name: str | None) -> None:
    """flash_attention_2 only where its package is installed: a clear error here, not transformers' deep one."""
    import importlib.util

    if name == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise ValueError("model.attn_implementation=flash_attention_2 needs the flash-attn package on the "
                         "workers (pip install flash-attn, CUDA only); use sdpa (the default) otherwise")


def load_causal_lm(spec: str | Path | Checkpoint, *, dtype: str = "auto", device: str | None = None,
                   adapters: Mapping[str, str] | None = None, trainable: bool = False,
                   cache_dir: Path | None = None, attn_implementation: str | None = None) -> Any:
    """The model of `spec` (with `adapters`, name -> directory, as one peft model whose first adapter
    is active: a bare adapter directory's own comes first), in `dtype`, moved to `device` ("auto": GPU if any; None: where transformers put it).
    Not `trainable`: eval mode and no gradients, for scoring and generating. `trainable`: gradients on
    and loaded adapters trainable, the mode left as transformers leaves it (eval: the base's dropout
    off, as training has always run); new LoRA layers for training are the trainer's business.
    `attn_implementation` (sdpa, eager, flash_attention_2; None: transformers' choice) picks the kernel.
    Under a live ZeRO-3 `HfDeepSpeedConfig` transformers loads the weights partitioned (zero.Init)."""
    from transformers import AutoModelForCausalLM

    check_attn_implementation(attn_implementation)
    ckpt = resolve_checkpoint(spec, adapters, cache_dir)
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = AutoModelForCausalLM.from_pretrained(ckpt.base, dtype=torch_dtype(dtype), **extra)
    if ckpt.adapters:
        from peft import PeftModel

        items = list(ckpt.adapters.items())
        model = PeftModel.from_pretrained(model, items[0][1], adapter_name=items[0][0], is_trainable=trainable)
        for name, adapter_path in items[1:]:
            model.load_adapter(adapter_path, adapter_name=name, is_trainable=trainable)
    if device is not None:
        model = model.to(pick_device(device))
    if trainable:
        return model
    model.eval()
    model.requires_grad_(False)
    return model


def load_tokenizer(spec: str | Path | Checkpoint, cache_dir: Path | None = None) -> Any:
    """The tokenizer of `spec`'s base checkpoint (a bare adapter directory uses its base's)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_checkpoint(spec, cache_dir=cache_dir).base)
