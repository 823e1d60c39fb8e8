"""The DeepSpeed config of a run: ours from the train section, merged over a user JSON.

A user's `train.deepspeed_config` JSON is the base and its keys win (bucket sizes, offload tuning,
communication options, ...) except where the trainer's correctness depends on ours: the batch sizes
and accumulation steps (the loop normalises the loss by the window it builds), the precision (the loop
casts and autocasts to match), the ZeRO stage (the loop's partitioned load and export follow it) and
the optimizer / scheduler (the loop hands DeepSpeed its own AdamW and learning-rate schedule). Each of
those the user set differently is reported, with our value. Plain data only: no deepspeed import here.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from kale_ray.config.train import TrainConfig

# dotted keys whose value the trainer sets whatever the user's JSON says
OWNED = ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size",
         "bf16.enabled", "fp16.enabled", "zero_optimization.stage", "optimizer", "scheduler")


def deepspeed_bf16(tc: TrainConfig) -> bool:
    """DeepSpeed's own bf16 mode casts the whole module: not with a lower-precision LoRA base, whose fp32
    adapters must stay fp32 (the loop autocasts instead)."""
    return tc.precision == "bf16" and tc.base_dtype == "float32"


def ours(tc: TrainConfig, world: int) -> dict[str, Any]:
    zero: dict[str, Any] = {"stage": tc.zero_stage}
    if tc.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": tc.use_gpu}
    if tc.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": tc.use_gpu}
    return {
        "train_micro_batch_size_per_gpu": tc.micro_batch_size,
        "gradient_accumulation_steps": tc.grad_accum,
        "train_batch_size": tc.micro_batch_size * tc.grad_accum * world,
        "gradient_clipping": tc.optim.max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": deepspeed_bf16(tc)},
        "fp16": {"enabled": False},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


def _get(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge(user: dict[str, Any], mine: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """`mine` under `user` (the user's keys win), then every OWNED key back to ours. Returns the config
    and one line per owned key the user had set to something else."""
    merged = _deep_merge(mine, user)
    overridden = []
    for key in OWNED:
        theirs, wanted = _get(user, key), _get(mine, key)
        if theirs is not None and theirs != wanted:
            overridden.append(f"{key}={json.dumps(theirs)} -> {json.dumps(wanted)}")
        _set(merged, key, copy.deepcopy(wanted))
    return merged, overridden


def read_user_config(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"train.deepspeed_config: {path} not found") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"train.deepspeed_config: {path} is not JSON ({err})") from None
    if not isinstance(value, dict):
        raise ValueError(f"train.deepspeed_config: {path} must hold a JSON object")
    return value


def deepspeed_config(tc: TrainConfig, world: int, log: bool = False) -> dict[str, Any]:
    """The config handed to deepspeed.initialize (and to HfDeepSpeedConfig for a ZeRO-3 load)."""
    mine = ours(tc, world)
    if tc.deepspeed_config is None:
        return mine
    merged, overridden = merge(read_user_config(tc.deepspeed_config), mine)
    if log and overridden:
        print(f"train: {tc.deepspeed_config}: the trainer sets {'; '.join(overridden)} "
              "(batch sizes, accumulation, precision, ZeRO stage and optimizer follow the train section)", flush=True)
    return merged
