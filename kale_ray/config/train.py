"""Config of KA fine-tuning and its baselines (docs/method.md, Stage 2).

The KA objective, the LoRA adapters, the optimizer and checkpointing are sections of their own
(`train.ka.*`, `train.lora.*`, `train.optim.*`, `train.checkpoint.*`): each is read by one part of
the trainer. The old flat keys are listed in `kale_ray.config.RENAMED`, whose errors name the new key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kale_ray.methods import METHODS, TrainedMethod, TrainerMethod, ka_overrides


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class KAConfig(_Section):
    """The KA loss: a divergence between the plain view (p, trained) and the with-rationale view (q)."""

    direction: Literal["reverse", "forward", "jsd"] = Field(
        "reverse", description="KL(p||q) as printed (reverse), KL(q||p) (forward) or JSD.")
    target: Literal["live", "frozen", "cached"] = Field(
        "live", description="q from the trained model under no-grad (live), from the initial model (frozen: the "
                            "model with its LoRA adapters disabled, or a frozen copy under full fine-tuning), or "
                            "from a precomputed top-k cache of the initial model's q (cached; docs/method.md).")
    temperature: float = Field(1.0, gt=0, description="Softmax temperature of both views in the KL.")
    ce_weight: float = Field(0.0, ge=0, description="Weight of plain CE on the answer without rationale.")
    jsd_beta: float = Field(0.5, gt=0, lt=1, description="Mixture weight of the JSD.")
    share_prefix: bool = Field(
        True, description="A live target: run the with-rationale view only over rationale + answer, on the "
                          "plain view's cached keys/values of their common prefix (exact; false: full second pass).")
    target_topk: int = Field(
        256, ge=1, description="A cached target: the k most likely tokens kept per answer position, the rest of "
                              "q's mass in one bucket (the KL is taken over these k+1 bins).")


class LoraConfig(_Section):
    """LoRA adapters (peft), or full fine-tuning when disabled."""

    enabled: bool = Field(True, description="LoRA adapters (true) or full fine-tuning.")
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA alpha.")
    dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout.")
    targets: Literal["all-linear"] | list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description='Modules LoRA wraps: a list of module names, or "all-linear" (every linear layer but the '
                    "output head, peft's target_modules).")

    @field_validator("targets", mode="before")
    @classmethod
    def _one_word_is_all_linear(cls, value: object) -> object:
        """One error naming both choices, not one per member of the union."""
        if isinstance(value, str) and value != "all-linear":
            raise ValueError('expected a list of module names or "all-linear"')
        return value


class OptimConfig(_Section):
    """AdamW, its learning-rate schedule and gradient clipping."""

    lr: float = Field(2e-4, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    schedule: Literal["constant", "linear", "cosine"] = Field(
        "cosine", description="Learning rate after warm-up: constant, linear decay to 0 or cosine decay to 0.")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm (0 turns clipping off).")


class CheckpointConfig(_Section):
    """Ray Train checkpoints: what a re-run or a restarted worker group resumes from."""

    every: int = Field(50, ge=1, description="Optimizer steps between checkpoints.")
    keep: int = Field(2, ge=1, description="Checkpoints kept per run.")


class TrainConfig(_Section):
    method: TrainerMethod = Field(
        "ka", description="ka: KALE's KL loss; sft: CE on question->answer; ce-rationale: the w/o-KA ablation.")
    methods: list[TrainedMethod] = Field(
        default_factory=lambda: ["sft", "ka"],
        description="Methods the pipeline trains (Vanilla needs none): sft, ka, ka-noki (KALE w/o KI), "
                    "ce-rationale (KALE w/o KA), ka-frozen (train.ka.target=frozen), ka-forward "
                    "(train.ka.direction=forward), ka-ce (train.ka.ce_weight=1): each ka-* arm is KALE with its "
                    "own train.ka values over these.")
    rows: Literal["all", "shared"] = Field(
        "all", description="Training rows of the pipeline's arms: all (each arm every row its source makes usable) "
                           "or shared (every arm, SFT included, the rows with KG paths and a usable rationale in "
                           "every rationales artifact the run trains on; same rows, so the same steps: "
                           "kale_ray/train/rows.py).")
    seeds: list[int] = Field(
        default_factory=list,
        description="Train every pipeline method once per seed (empty: once, with the global seed).")
    ka: KAConfig = Field(default_factory=KAConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
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
    max_failures: int = Field(2, ge=0, description="Ray Train FailureConfig retries after a worker dies.")
    log_every: int = Field(1, ge=1, description="Optimizer steps between metric lines.")
    shuffle: bool = Field(True, description="Shuffle the training rows once (seeded by the global seed) before sharding.")
    export: bool = Field(True, description="Write final/ (plain checkpoint, LoRA merged) and adapter/ after training.")
    # Memory levers (docs/stages/train.md, "Fitting a large model"); `kale-ray train plan` prices them.
    gradient_checkpointing: bool = Field(
        False, description="Recompute each decoder layer's activations in the backward pass (keeps only the layer "
                           "inputs); turns train.ka.share_prefix off, whose prefix cache it cannot keep.")
    base_dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Dtype of the frozen base weights under LoRA; the adapters and their optimizer "
                               "states stay float32 (full fine-tuning: use train.precision).")
    offload_optimizer: bool = Field(
        False, description="DeepSpeed ZeRO: keep optimizer states (and the step) in CPU memory (needs zero_stage >= 1).")
    offload_params: bool = Field(
        False, description="DeepSpeed ZeRO-3: keep the partitioned parameters in CPU memory between uses.")
    deepspeed_config: Path | None = Field(
        None, description="A DeepSpeed JSON merged under ours: its keys win, except batch sizes, accumulation, "
                          "precision and the ZeRO stage, which the trainer sets (overrides are logged).")
    gpu_memory_gb: float | None = Field(
        None, gt=0, description="Memory of one GPU in GB, what `kale-ray train plan` checks the plan against.")

    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=lambda: ["tensorboard"],
        description="Experiment trackers rank 0 logs to: tensorboard (always installed), mlflow and wandb "
                    "(extras kale-ray[mlflow], kale-ray[wandb]).")
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI (none: a local file store, mlruns/ in the run's directory).")
    wandb_mode: Literal["offline", "online"] = Field(
        "offline", description="wandb offline (files under the run's wandb/, `wandb sync` later) or online.")

    def for_method(self, name: str) -> TrainConfig:
        """This config as a run of pipeline method `name` trains it: its trainer method, its own
        `train.ka` values (kale_ray.methods) over the configured ones, and `methods` = that one method
        (a run trains one arm: its config, and so its run key, does not depend on which other arms the
        pipeline trains, and an arm's train.ka is not read as the twin of `ka`)."""
        ka = KAConfig.model_validate({**self.ka.model_dump(), **ka_overrides(name)})
        return self.model_copy(update={"method": METHODS[name].trainer or self.method, "ka": ka, "methods": [name]})

    @model_validator(mode="after")
    def _arms_differ(self) -> TrainConfig:
        """An arm whose own train.ka values the config already has would train KALE again under another
        name (e.g. ka-forward under train.ka.direction=forward): refused, so no table shows twins."""
        for name in self.methods:
            own = ka_overrides(name)
            if own and "ka" in self.methods and all(getattr(self.ka, k) == v for k, v in own.items()):
                keys = ", ".join(f"train.ka.{k}={v}" for k, v in own.items())
                raise ValueError(f"train.methods has ka and {name}, which are the same run under {keys}")
        return self

    @model_validator(mode="after")
    def _levers_fit_the_strategy(self) -> TrainConfig:
        deepspeed_only = {"offload_optimizer": self.offload_optimizer, "offload_params": self.offload_params,
                          "deepspeed_config": self.deepspeed_config is not None}
        used = [k for k, on in deepspeed_only.items() if on]
        if self.strategy != "deepspeed" and used:
            raise ValueError(f"{', '.join(used)} need train.strategy=deepspeed")
        if self.offload_optimizer and self.zero_stage < 1:
            raise ValueError("offload_optimizer needs train.zero_stage >= 1")
        if self.offload_params and self.zero_stage != 3:
            raise ValueError("offload_params needs train.zero_stage=3")
        if self.base_dtype != "float32" and not self.lora.enabled:
            raise ValueError("base_dtype applies to the frozen base under LoRA; full fine-tuning sets its "
                             "dtype with train.precision")
        return self
