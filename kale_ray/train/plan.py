"""The memory plan of a training run: bytes per worker, from the model's config.json alone.

`kale-ray train plan --config FILE` prices what one Ray Train worker holds: weights, gradients,
optimizer states, activations (with and without gradient checkpointing) and KA's target pass, under
the run's ZeRO stage, worker count, precision and levers, and says whether that fits the GPU memory the
config names (`train.gpu_memory_gb`). Nothing is loaded but config.json.

Activations are counted per token and decoder layer, in elements of the activation dtype: a Llama-type
layer saves about 8*hidden + 3*intermediate for backward when only the attention projections train
(LoRA on q/k/v/o: the frozen MLP projections keep no inputs) and 8*hidden + 5*intermediate when the
MLP projections train too; eager attention adds heads*length (the softmax it keeps). These counts were
measured with torch's saved-tensor hooks on SmolLM2 (transformers 5.23, sdpa) and agree with its
measured peak memory on CPU within 25% (bench/train_memory.py, tests/unit/test_train_plan.py).
Gradient checkpointing keeps each layer's input (hidden per token and layer) plus one layer being
recomputed and its gradients. The answer span (the logits kept per row) is taken as ANSWER_SPAN tokens.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kale_ray.config.train import TrainConfig

ANSWER_SPAN = 16  # answer tokens per row whose logits the loss keeps (an estimate; answers are short)
HEADROOM = 0.9  # share of a GPU's memory a plan may use: the rest is the CUDA context and fragmentation
GPUS = {"L4 / A10 (24 GB)": 24, "A100 40 GB": 40, "L40S / A6000 (48 GB)": 48, "A100 / H100 80 GB": 80,
        "H200 (141 GB)": 141}
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
GB = 1e9


@dataclass(frozen=True)
class ModelShape:
    """What the plan needs of a decoder-only transformer's config.json."""

    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool
    qkv_bias: bool

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape:
        text = config.get("text_config", config)  # multimodal configs nest the language model's
        try:
            hidden, heads = int(text["hidden_size"]), int(text["num_attention_heads"])
            return cls(vocab=int(text["vocab_size"]), hidden=hidden, intermediate=int(text["intermediate_size"]),
                       layers=int(text["num_hidden_layers"]), heads=heads,
                       kv_heads=int(text.get("num_key_value_heads") or heads),
                       head_dim=int(text.get("head_dim") or hidden // heads),
                       tied=bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False))),
                       qkv_bias=bool(text.get("attention_bias", text.get("model_type") == "qwen2")))
        except KeyError as err:
            raise ValueError(f"config.json lacks {err.args[0]!r}: not a decoder-only transformer the plan knows") from None

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear projection of one decoder layer."""
        h, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def params(self) -> int:
        per_layer = sum(a * b for a, b in self.linear_shapes().values()) + 2 * self.hidden
        if self.qkv_bias:
            per_layer += (self.heads + 2 * self.kv_heads) * self.head_dim
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return self.layers * per_layer + embeddings + self.hidden

    def lora_params(self, targets: list[str] | str, r: int) -> int:
        shapes = self.linear_shapes()
        names = list(shapes) if targets == "all-linear" else [t for t in targets if t in shapes]
        return self.layers * sum(r * (shapes[n][0] + shapes[n][1]) for n in names)


def read_model_config(name_or_path: str, cache_dir: Path | None = None) -> dict[str, Any]:
    """config.json of a registered model (prepared), a local checkpoint or config file, or a hub id found
    in the local Hugging Face cache: never a download."""
    from kale_ray.engines.registry import REGISTRY, prepared_path

    candidates = []
    if name_or_path in REGISTRY:
        candidates.append(prepared_path(name_or_path, cache_dir) / "config.json")
    path = Path(os.path.expanduser(name_or_path))
    candidates += [path] if path.suffix == ".json" else [path / "config.json"]
    if "/" in name_or_path and not path.exists():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(name_or_path, "config.json")
            if isinstance(cached, str):
                candidates.append(Path(cached))
        except Exception:  # noqa: BLE001 (not a valid repo id: the error below says what to do)
            pass
    for candidate in candidates:
        if candidate.is_file():
            return json.loads(candidate.read_text())
    raise ValueError(f"no config.json for model {name_or_path!r} locally (looked at "
                     f"{', '.join(str(c) for c in candidates) or 'the Hugging Face cache'}); give a local "
                     "checkpoint, prepare the registered model, or pass --model-config FILE")


@dataclass(frozen=True)
class Plan:
    """Bytes per worker (accelerator memory; what offload moves to CPU is in cpu_bytes)."""

    rows: dict[str, int]
    activations_checkpointed: int
    activations_full: int
    cpu_bytes: int
    params: int
    trainable: int
    workers: int
    zero_stage: int
    checkpointing: bool
    gpu_memory_gb: float | None

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    def fits(self, gpu_gb: float) -> bool:
        return self.total <= HEADROOM * gpu_gb * GB


def make_plan(shape: ModelShape, tc: TrainConfig, method: str | None = None,
              attn_implementation: str = "sdpa") -> Plan:
    method = method or tc.method
    n = tc.workers
    ds = tc.strategy == "deepspeed"
    ds_bf16 = ds and tc.precision == "bf16" and tc.base_dtype == "float32"  # the engine casts the module
    half = {"float32": 4, "bfloat16": 2, "float16": 2}
    # bytes per activation element: bf16 under autocast or DeepSpeed's bf16; a half-precision base without
    # autocast mixes half (residual stream, frozen projections) with float32 (norms, LoRA branches):
    # about 3 bytes measured on SmolLM2
    act = 2 if tc.precision == "bf16" else (3 if tc.base_dtype != "float32" else 4)
    total = shape.params()
    if tc.lora.enabled:
        trainable = shape.lora_params(tc.lora.targets, tc.lora.r)
        frozen_bytes = total * (2 if ds_bf16 else half[tc.base_dtype])
    else:
        trainable, frozen_bytes = total, 0
    module_bytes = 2 if ds_bf16 else 4
    weights = frozen_bytes + trainable * module_bytes
    grads = trainable * module_bytes
    optim = trainable * (8 + (4 if ds_bf16 else 0))  # Adam's two moments (+ fp32 master weights under bf16)
    stage = tc.zero_stage if ds else 0
    if stage == 3:
        weights //= n
    if stage >= 2:
        grads //= n
    elif not ds and n > 1:
        grads *= 2  # DDP's communication buckets hold a second copy
    if stage >= 1:
        optim //= n
    cpu = 0
    if ds and tc.offload_params:
        cpu, weights = cpu + weights, 0
    if ds and tc.offload_optimizer:
        cpu, optim = cpu + optim, 0

    h, i, kv = shape.hidden, shape.intermediate, shape.kv_heads * shape.head_dim
    rows_per_step, length = tc.micro_batch_size, tc.max_length
    tokens = rows_per_step * length
    mlp_trains = not tc.lora.enabled or tc.lora.targets == "all-linear" or any(
        t not in ATTENTION for t in tc.lora.targets)
    per_layer = 8 * h + (5 if mlp_trains else 3) * i
    if attn_implementation == "eager":
        per_layer += shape.heads * length
    logits = rows_per_step * (ANSWER_SPAN + 1) * shape.vocab * (act + 3 * 4)  # logits, fp32 log-softmax, grad
    full = tokens * per_layer * act * (shape.layers + 1) + logits
    checkpointed = tokens * act * (shape.layers * h + 2 * per_layer) + logits
    activations = checkpointed if tc.gradient_checkpointing else full

    target = 0
    if method == "ka":
        # a no-grad pass over the with-rationale view: one layer's intermediates at a time, its answer logits
        target = tokens * (3 * i + 4 * h) * act + rows_per_step * ANSWER_SPAN * shape.vocab * 4 * 2
        share = tc.ka.share_prefix and tc.ka.target == "live" and not tc.gradient_checkpointing
        if share:
            target += 2 * kv * tokens * shape.layers * act  # the prefix cache packed for the target view
        if tc.ka.target == "frozen" and not tc.lora.enabled:
            target += total * (2 if tc.precision == "bf16" else 4)  # full fine-tuning keeps a frozen copy
    rows = {"weights": weights, "gradients": grads, "optimizer states": optim, "activations": activations,
            "ka target pass": target}
    return Plan(rows=rows, activations_checkpointed=checkpointed, activations_full=full, cpu_bytes=cpu,
                params=total, trainable=trainable, workers=n, zero_stage=stage,
                checkpointing=tc.gradient_checkpointing, gpu_memory_gb=tc.gpu_memory_gb)


def _gb(value: float) -> str:
    return f"{value / GB:7.2f} GB"


def format_plan(plan: Plan, model: str, method: str) -> str:
    lines = [f"memory plan: {model}, {plan.params / 1e9:.2f}B parameters ({plan.trainable / 1e6:.1f}M trained), "
             f"method {method}", f"{plan.workers} GPU workers, ZeRO stage {plan.zero_stage}, "
             f"gradient checkpointing {'on' if plan.checkpointing else 'off'}", "per worker:"]
    for name, value in plan.rows.items():
        lines.append(f"  {name:18s} {_gb(value)}")
    lines.append(f"  {'total':18s} {_gb(plan.total)}")
    lines.append(f"activations: {_gb(plan.activations_full).strip()} without checkpointing, "
                 f"{_gb(plan.activations_checkpointed).strip()} with")
    if plan.cpu_bytes:
        lines.append(f"offloaded to CPU memory: {_gb(plan.cpu_bytes).strip()} per worker")
    if plan.gpu_memory_gb:
        verdict = "fits" if plan.fits(plan.gpu_memory_gb) else "does NOT fit"
        lines.append(f"train.gpu_memory_gb={plan.gpu_memory_gb:g}: {verdict} "
                     f"(using at most {HEADROOM:.0%} of it)")
    else:
        lines.append("train.gpu_memory_gb not set: no fit verdict")
    fitting = [name for name, gb in GPUS.items() if plan.fits(gb)]
    lines.append(f"fits on: {', '.join(fitting) or 'none of ' + ', '.join(GPUS)}")
    return "\n".join(lines)
