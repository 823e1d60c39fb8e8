"""Two ways to run the optimizer over the workers, behind one small interface: DeepSpeed ZeRO or DDP.

Both average gradients over the data-parallel ranks, so the loop multiplies its globally normalised
loss by the world size (`loss_scale`) and the sum over ranks comes out as the global token mean.
DeepSpeed's own division by the accumulation steps is turned off (`scale_wrt_gas=False`): the loop
already divides by the global token count of the whole accumulation window.
Everything here runs inside a Ray Train worker; deepspeed is imported only there.
"""

from __future__ import annotations

import contextlib
import importlib
import math
from pathlib import Path
from typing import Any

from kale_ray.config.train import TrainConfig

DDP_STATE = "ddp_state.pt"
DS_TAG = "deepspeed"


def lr_lambda(tc: TrainConfig, total_steps: int):  # noqa: ANN201
    """Linear warm-up, then constant, linear or cosine decay to zero at total_steps."""
    opt = tc.optim

    def factor(step: int) -> float:
        if opt.warmup_steps and step < opt.warmup_steps:
            return (step + 1) / opt.warmup_steps
        if opt.schedule == "constant":
            return 1.0
        progress = (step - opt.warmup_steps) / max(1, total_steps - opt.warmup_steps)
        progress = min(max(progress, 0.0), 1.0)
        if opt.schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _optimizer(model: Any, tc: TrainConfig, total_steps: int, cpu_adam: bool = False) -> tuple[Any, Any]:
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if cpu_adam:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        optimizer = DeepSpeedCPUAdam(params, lr=tc.optim.lr, weight_decay=tc.optim.weight_decay, adamw_mode=True)
    else:
        optimizer = torch.optim.AdamW(params, lr=tc.optim.lr, weight_decay=tc.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(tc, total_steps))
    return optimizer, scheduler


def prepare_deepspeed() -> None:
    """On CPU, DeepSpeed's init_distributed JIT-builds a shared-memory op for 25-70 s; gloo does not need it.
    Called before anything joins DeepSpeed's process group (a ZeRO-3 load, deepspeed.initialize)."""
    importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None


def cpu_adam_available() -> tuple[bool, str]:
    """Whether DeepSpeed's CPU Adam op loads (prebuilt or JIT-compiled: needs a C++ compiler and ninja)."""
    try:
        from deepspeed.ops.op_builder import CPUAdamBuilder

        CPUAdamBuilder().load(verbose=False)
    except Exception as err:  # noqa: BLE001 (any build failure means: use torch's AdamW)
        return False, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return True, ""


def offloads_optimizer(config: dict[str, Any]) -> bool:
    offload = config.get("zero_optimization", {}).get("offload_optimizer") or {}
    return offload.get("device") in ("cpu", "nvme")


class DeepSpeedRunner:
    """A DeepSpeed engine with torch's AdamW as the client optimizer (FusedAdam would JIT-compile). With
    the optimizer offloaded to CPU on GPU workers, DeepSpeed's CPU Adam (its op JIT-compiles once per node,
    about 3 CPU-minutes) or, if it does not build, torch's AdamW stepping the CPU copies
    (`zero_force_ds_cpu_optimizer: false`; slower, same update). CPU-only workers take torch's AdamW."""

    def __init__(self, model: Any, tc: TrainConfig, total_steps: int, world: int) -> None:
        prepare_deepspeed()
        import deepspeed

        from kale_ray.train.deepspeed_config import deepspeed_bf16, deepspeed_config

        config = deepspeed_config(tc, world, log=True)
        self.notes: list[str] = []
        cpu_adam = False
        if offloads_optimizer(config):
            # CPU-only workers: the op would JIT-compile for minutes to speed up a step that is CPU-bound anyway
            cpu_adam, why = cpu_adam_available() if tc.use_gpu else (False, "not tried on CPU-only workers")
            if not cpu_adam:
                config["zero_force_ds_cpu_optimizer"] = False
                self.notes.append(f"optimizer offloaded to CPU, stepped by torch's AdamW instead of DeepSpeed's "
                                  f"CPU Adam ({why})")
        optimizer, scheduler = _optimizer(model, tc, total_steps, cpu_adam=cpu_adam)
        self.tc, self.config = tc, config
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=config)
        self.loss_scale = float(world)
        self.device_type = self.engine.device.type if hasattr(self.engine.device, "type") else "cpu"
        self.mixed = tc.precision == "bf16" and not deepspeed_bf16(tc)

    @property
    def module(self) -> Any:
        return self.engine.module

    def forward(self, **inputs: Any) -> Any:
        return self.engine(**inputs)

    def autocast(self) -> Any:
        """DeepSpeed's bf16 mode casts the module itself; over a bf16/fp16 LoRA base (fp32 adapters) it is
        off and the forward autocasts instead."""
        if not self.mixed:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self.device_type, dtype=torch.bfloat16)

    def backward(self, loss: Any, last: bool) -> None:
        self.engine.backward(loss, scale_wrt_gas=False)
        self.engine.step()  # applies the optimizer only at the accumulation boundary

    def step(self) -> None:
        pass

    def lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def save(self, directory: Path) -> None:
        """Every rank writes its own shards (ZeRO partitions); frozen LoRA base weights are left out."""
        self.engine.save_checkpoint(str(directory), tag=DS_TAG, exclude_frozen_parameters=self.tc.lora.enabled)

    def load(self, directory: Path) -> None:
        path, _ = self.engine.load_checkpoint(str(directory), tag=DS_TAG, load_module_strict=not self.tc.lora.enabled)
        if path is None:
            raise RuntimeError(f"no DeepSpeed checkpoint under {directory}")

    def gathered(self) -> Any:
        """Full parameters on every rank for export (ZeRO-3 partitions them)."""
        if self.tc.zero_stage != 3:
            return contextlib.nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(self.engine.module.parameters()), modifier_rank=None)


class DDPRunner:
    """Plain torch DistributedDataParallel, the reference the ZeRO stages are compared with."""

    def __init__(self, model: Any, tc: TrainConfig, total_steps: int, world: int, device: Any) -> None:
        import torch
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        self.tc, self.device = tc, device
        self.notes: list[str] = []
        model.to(device)
        self.model = model
        self.wrapped = model
        if dist.is_available() and dist.is_initialized():
            ids = [device.index] if device.type == "cuda" else None
            self.wrapped = DistributedDataParallel(model, device_ids=ids)
        self.optimizer, self.scheduler = _optimizer(model, tc, total_steps)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.loss_scale = float(world)
        self._torch = torch

    @property
    def module(self) -> Any:
        return self.model

    def forward(self, **inputs: Any) -> Any:
        return self.wrapped(**inputs)

    def autocast(self) -> Any:
        if self.tc.precision != "bf16":
            return contextlib.nullcontext()
        return self._torch.autocast(self.device.type, dtype=self._torch.bfloat16)

    def backward(self, loss: Any, last: bool) -> None:
        sync = last or not hasattr(self.wrapped, "no_sync")
        with contextlib.nullcontext() if sync else self.wrapped.no_sync():
            loss.backward()

    def step(self) -> None:
        if self.tc.optim.max_grad_norm:
            self._torch.nn.utils.clip_grad_norm_(self.params, self.tc.optim.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def _trainable_state(self) -> dict[str, Any]:
        names = {n for n, p in self.model.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.model.state_dict().items() if k in names}

    def save(self, directory: Path) -> None:
        import torch.distributed as dist

        if dist.is_initialized() and dist.get_rank() != 0:
            return  # replicated state: rank 0's copy is everyone's
        self._torch.save({"model": self._trainable_state(), "optimizer": self.optimizer.state_dict(),
                          "scheduler": self.scheduler.state_dict()}, Path(directory) / DDP_STATE)

    def load(self, directory: Path) -> None:
        state = self._torch.load(Path(directory) / DDP_STATE, map_location=self.device, weights_only=False)
        missing = set(self._trainable_state()) - set(state["model"])
        if missing:
            raise RuntimeError(f"checkpoint lacks {len(missing)} trainable tensors, e.g. {sorted(missing)[:3]}")
        self.model.load_state_dict(state["model"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def gathered(self) -> Any:
        return contextlib.nullcontext()


def make_runner(model: Any, tc: TrainConfig, total_steps: int, world: int, device: Any) -> Any:
    if tc.strategy == "ddp":
        return DDPRunner(model, tc, total_steps, world, device)
    if tc.zero_stage != 3:  # ZeRO-3 parameters already sit where DeepSpeed put their partitions
        model = model.to(device)
    return DeepSpeedRunner(model, tc, total_steps, world)
