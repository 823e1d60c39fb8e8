"""Config of KA fine-tuning and its baselines (METHOD.md, Stage 2)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    method: Literal["ka", "sft", "ce-rationale"] = Field(
        "ka", description="ka: KALE's KL loss; sft: CE on question->answer; ce-rationale: the w/o-KA ablation.")
    methods: list[str] = Field(
        default_factory=lambda: ["sft", "ka"], description="Methods the pipeline trains (Vanilla needs none).")
    seeds: list[int] = Field(
        default_factory=list,
        description="Train every pipeline method once per seed (empty: once, with the global seed).")
    direction: Literal["reverse", "forward", "jsd"] = Field(
        "reverse", description="KL(p||q) as printed (reverse), KL(q||p) (forward) or JSD.")
    jsd_beta: float = Field(0.5, gt=0, lt=1, description="Mixture weight of the JSD.")
    target: Literal["live", "frozen"] = Field(
        "live", description="q from the trained model under no-grad (live) or from a frozen copy of the initial model.")
    share_prefix: bool = Field(
        True, description="ka with a live target: run the with-rationale view only over rationale + answer, on the "
                          "plain view's cached keys/values of their common prefix (exact; false: full second pass).")
    temperature: float = Field(1.0, gt=0, description="Softmax temperature of both views in the KL.")
    ce_weight: float = Field(0.0, ge=0, description="Weight of plain CE on the answer without rationale.")
    lora: bool = Field(True, description="LoRA adapters (true) or full fine-tuning.")
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha.")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout.")
    lora_targets: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], description="Modules LoRA wraps.")
    lr: float = Field(2e-4, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")
    epochs: int = Field(1, ge=1, description="Passes over the training data.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps.")
    micro_batch_size: int = Field(4, ge=1, description="Examples per worker per micro-step.")
    grad_accum: int = Field(1, ge=1, description="Micro-steps per optimizer step.")
    max_length: int = Field(512, ge=16, description="Token cap of a view; the rationale is cut first, never the answer.")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16 on GPUs, fp32 on CPUs.")
    zero_stage: int = Field(2, ge=0, le=3, description="DeepSpeed ZeRO stage (0 = plain data parallel through DeepSpeed).")
    strategy: Literal["deepspeed", "ddp"] = Field("deepspeed", description="DeepSpeed engine or plain torch DDP.")
    workers: int = Field(2, ge=1, description="Ray Train workers.")
    use_gpu: bool = Field(False, description="One GPU per worker and NCCL; false: CPU and gloo.")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved per Ray Train worker.")
    checkpoint_every: int = Field(50, ge=1, description="Optimizer steps between checkpoints.")
    keep_checkpoints: int = Field(2, ge=1, description="Checkpoints kept per run.")
    max_failures: int = Field(2, ge=0, description="Ray Train FailureConfig retries after a worker dies.")
    log_every: int = Field(1, ge=1, description="Optimizer steps between metric lines.")
    lr_schedule: Literal["constant", "linear", "cosine"] = Field(
        "cosine", description="Learning rate after warm-up: constant, linear decay to 0 or cosine decay to 0.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm (0 turns clipping off).")
    shuffle: bool = Field(True, description="Shuffle the training rows once (seeded by the global seed) before sharding.")
    export: bool = Field(True, description="Write final/ (plain checkpoint, LoRA merged) and adapter/ after training.")
