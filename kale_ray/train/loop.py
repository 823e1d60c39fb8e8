"""The function every Ray Train worker runs: one trainer for ka, sft and ce-rationale.

Per optimizer step a worker takes `grad_accum` micro-batches of its dataset shard, all-reduces their
answer-token count, and divides every micro-batch's loss sum by that GLOBAL count (times the world
size, which the data-parallel averaging divides out again). The target view of `ka` runs under
no-grad: through the same model (`live`), the initial model (`frozen`: adapters off, or a copy under
full fine-tuning; targets.py), or not at all (`cached`: the batch carries q's top-k; target_cache.py).
Heavy imports (torch, transformers, peft, deepspeed) happen here, inside the worker.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from kale_ray import storage
from kale_ray.config.train import TrainConfig
from kale_ray.train.checkpoint import EXPORT_DIR, TrainState, checkpoint_dir_name, read_state, write_state


def build_model(path: str, tc: TrainConfig, trainable: bool = True, *, attn_implementation: str | None = None,
                world: int = 1) -> Any:
    """The model a worker trains (or, not `trainable`, the frozen target copy) with the memory levers of
    `tc` applied: a lower-precision LoRA base (`base_dtype`), a ZeRO-3 partitioned load (every rank
    reads only its shard: transformers' from_pretrained runs under deepspeed.zero.Init while a ZeRO-3
    `HfDeepSpeedConfig` is alive; the object is kept on the model for the run), and gradient
    checkpointing. The frozen copy is loaded whole: no engine owns it, so it cannot be partitioned."""
    from kale_ray.engines.loading import load_causal_lm

    if not trainable:
        dtype = "bfloat16" if tc.precision == "bf16" else "float32"
        with _zero3_load(None):  # load_causal_lm already puts it in eval mode with gradients off
            model = load_causal_lm(path, dtype=dtype, trainable=False, attn_implementation=attn_implementation)
        model.config.use_cache = False
        return model
    dtype = tc.base_dtype if tc.lora.enabled else "float32"
    hf_ds_config = zero3_load_config(tc, world)
    with _zero3_load(hf_ds_config):
        model = load_causal_lm(path, dtype=dtype, trainable=True, attn_implementation=attn_implementation)
    model.config.use_cache = False
    if tc.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if tc.lora.enabled:
        from peft import LoraConfig, get_peft_model

        # peft keeps the adapters float32 over a bfloat16/float16 base (autocast_adapter_dtype)
        model = get_peft_model(model, LoraConfig(
            r=tc.lora.r, lora_alpha=tc.lora.alpha, lora_dropout=tc.lora.dropout,
            target_modules=tc.lora.targets, task_type="CAUSAL_LM"), autocast_adapter_dtype=True)
    if hf_ds_config is not None:
        model.kale_hf_deepspeed_config = hf_ds_config  # transformers holds it by weak reference only
    return model


def zero3_load_config(tc: TrainConfig, world: int) -> Any:
    """A transformers HfDeepSpeedConfig of this run's DeepSpeed config when it is ZeRO-3, else None."""
    if tc.strategy != "deepspeed" or tc.zero_stage != 3:
        return None
    import deepspeed
    from transformers.integrations import HfDeepSpeedConfig

    from kale_ray.train.deepspeed_config import deepspeed_config

    deepspeed.init_distributed()  # joins the process group Ray Train started: the config checks the world size
    return HfDeepSpeedConfig(deepspeed_config(tc, world))


class _zero3_load:  # noqa: N801 (a context manager used like a function)
    """ZeRO-3 partitioned loading on (with an HfDeepSpeedConfig) or off (None) inside the block: off for
    the frozen copy, which must load whole even while the trained model's ZeRO-3 config is alive."""

    def __init__(self, hf_ds_config: Any) -> None:
        self.config = hf_ds_config

    def __enter__(self) -> None:
        from transformers.integrations import deepspeed as hf_ds

        self.saved = hf_ds._hf_deepspeed_config_weak_ref
        if self.config is None:
            hf_ds.unset_hf_deepspeed_config()
        else:
            hf_ds.set_hf_deepspeed_config(self.config)

    def __exit__(self, *exc: object) -> None:
        from transformers.integrations import deepspeed as hf_ds

        hf_ds._hf_deepspeed_config_weak_ref = self.saved


def enable_gradient_checkpointing(model: Any) -> None:
    """Checkpoint every decoder layer (non-reentrant torch checkpointing). transformers checkpoints a layer
    only while it is in training mode, and the trainer runs the model in eval mode (dropout off, as it
    always has): so the decoder layers alone are flagged as training; their submodules stay in eval mode.
    transformers also hooks the input embeddings to require grad, which a LoRA model (a frozen embedding
    under checkpointed layers) needs."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    if not layers:
        raise ValueError(f"train.gradient_checkpointing: {type(model).__name__} has no checkpointable layers")
    for layer in layers:
        layer.training = True  # this module only: not .train(), which would switch dropout on below it


MEMORY_DIR = "memory"  # <run>/memory/rank-N.json: each worker's parameters and peak memory


def parameter_counts(model: Any) -> dict[str, int]:
    """Elements of the whole model and of what this rank holds (a ZeRO-3 parameter holds its partition
    in `ds_tensor` and reports the full size as `ds_numel`)."""
    total = local = trainable = 0
    for param in model.parameters():
        full = int(getattr(param, "ds_numel", param.numel()))
        total += full
        local += int(param.ds_tensor.numel()) if hasattr(param, "ds_tensor") else int(param.numel())
        trainable += full if param.requires_grad else 0
    return {"total": total, "local": local, "trainable": trainable}


def peak_memory_bytes(device: Any) -> int:
    """The process's peak resident memory (CPU) or the device's peak allocation (CUDA)."""
    if device.type == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated(device))
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def write_memory_report(run_dir: Path, rank: int, model: Any, device: Any) -> None:
    import json

    out = run_dir / MEMORY_DIR
    out.mkdir(parents=True, exist_ok=True)
    record = {"rank": rank, "params": parameter_counts(model), "peak_bytes": peak_memory_bytes(device),
              "device": device.type}
    (out / f"rank-{rank}.json").write_text(json.dumps(record))


def lever_notes(tc: TrainConfig, method: str) -> list[str]:
    """What a lever changes in how the run trains, said once at its start."""
    notes = []
    if tc.gradient_checkpointing and method == "ka" and tc.ka.share_prefix and tc.ka.target == "live":
        notes.append("gradient checkpointing keeps no key/value cache, so the target view takes its full "
                     "no-grad pass (train.ka.share_prefix has no effect)")
    return notes


def _to(inputs: dict[str, Any], device: Any) -> dict[str, Any]:
    return {k: v.to(device) for k, v in inputs.items()}


def _to_tuple(cached: dict[str, Any], device: Any) -> tuple[Any, Any, Any]:
    return cached["ids"].to(device), cached["top"].to(device), cached["rest"].to(device)


class StepLogger:
    """Rank 0's metrics.jsonl, experiment trackers (train.report_to; tracking.py) and progress lines."""

    def __init__(self, run_dir: Path, method: str, total_steps: int, start_step: int, tc: TrainConfig | None = None,
                 names: tuple[str, str] = ("kale-ray", "train")) -> None:
        from kale_ray.progress import MetricsWriter
        from kale_ray.train.tracking import open_trackers

        self.metrics = MetricsWriter(run_dir / "metrics.jsonl")
        self.trackers = open_trackers(run_dir, tc or TrainConfig(method=method), *names)
        self.method, self.total, self.start_step = method, total_steps, start_step
        self.start = time.monotonic()

    def log(self, record: dict[str, Any]) -> None:
        from kale_ray.progress import format_seconds
        from kale_ray.train.tracking import SCALARS

        self.metrics.write(record)
        step = record["step"]
        for tracker in self.trackers:
            tracker.log({key: record[key] for key in SCALARS}, step)
        done = step - self.start_step
        eta = (time.monotonic() - self.start) / max(done, 1) * (self.total - step)
        print(f"train[{self.method}]: step {step}/{self.total} loss {record['loss']:.4f} kl {record['kl']:.4f} "
              f"ce {record['ce']:.4f} lr {record['lr']:.2e} {record['tokens_per_s']:.0f} tokens/s "
              f"ETA {format_seconds(eta)}", flush=True)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()


def prefix_cache(past: Any, rows: Any, cols: Any) -> Any:
    """The cache entries (batch row, column) of every layer, packed into one row and detached: the
    target pass must send no gradient back into the student's keys/values."""
    from transformers import DynamicCache

    def pack(states: Any) -> Any:  # [B, H, L, D] -> [1, H, len(rows), D]
        return states[rows, :, cols].detach().transpose(0, 1).unsqueeze(0)

    return DynamicCache(ddp_cache_data=[(pack(layer.keys), pack(layer.values)) for layer in past.layers])


def shared_target_logits(model: Any, past: Any, shared: dict[str, Any], span: int, device: Any) -> Any:
    """Answer-position logits [B, span, V] of the target view, run over the packed suffixes on the
    student's prefix cache (see `collate.shared_target_view`); call under no-grad."""
    out = model(input_ids=shared["input_ids"].to(device), attention_mask=shared["attention_mask"].to(device),
                position_ids=shared["position_ids"].to(device),
                past_key_values=prefix_cache(past, shared["cache_rows"].to(device), shared["cache_cols"].to(device)),
                use_cache=False, logits_to_keep=shared["keep"].to(device))
    return out.logits.view(len(shared["prefix_len"]), span, -1)


def train_step(window: list[dict[str, Any]], *, method: str, tc: TrainConfig, runner: Any, frozen: Any,
               pad_id: int, device: Any) -> dict[str, Any]:
    """One optimizer step over `grad_accum` micro-batches, the loss divided by the GLOBAL answer-token
    count of the window; returns the step's global means and throughput."""
    import torch

    from kale_ray.train.collate import answer_logits, collate
    from kale_ray.train.losses import global_sum, method_sums

    started = time.monotonic()
    on = device if device.type == "cuda" else None  # gloo reduces CPU tensors
    cached = method == "ka" and tc.ka.target == "cached"  # q's top-k comes with the rows
    # a frozen target has other weights; a checkpointed layer keeps no cache (see train.gradient_checkpointing)
    share = (method == "ka" and tc.ka.share_prefix and frozen is None and not cached
             and not tc.gradient_checkpointing)
    batches = [collate(b, pad_id, with_target=method == "ka" and not cached, share_prefix=share) for b in window]
    answer_tokens = global_sum(sum(int(b["answer_mask"].sum()) for b in batches), on)
    lr = runner.lr()
    sums = torch.zeros(3, dtype=torch.float64)
    seen = 0
    for k, batch in enumerate(batches):
        span = batch["span"]
        labels, mask = batch["labels"].to(device), batch["answer_mask"].to(device)
        target_logits = None
        shared = batch.get("shared")
        if cached and "cached" not in batch:
            raise ValueError("train.ka.target=cached, but the rows carry no cached target "
                             "(the train stage attaches it: target_cache.attach_cache)")
        target_topk = _to_tuple(batch["cached"], device) if cached else None
        if method == "ka" and shared is None and not cached:
            seen += int(batch["target"]["attention_mask"].sum())
            with torch.no_grad(), runner.autocast():
                teacher = frozen if frozen is not None else runner.module
                out = teacher(**_to(batch["target"], device), logits_to_keep=span + 1)
                target_logits = answer_logits(out.logits, span)
        seen += int(batch["student"]["attention_mask"].sum())
        with runner.autocast():
            out = runner.forward(**_to(batch["student"], device), logits_to_keep=span + 1,
                                 use_cache=shared is not None)
        if shared is not None:
            seen += shared["suffix_tokens"]  # the tokens the target pass ran, not its whole view
            with torch.no_grad(), runner.autocast():
                target_logits = shared_target_logits(runner.module, out.past_key_values, shared, span, device)
        part = method_sums(method, answer_logits(out.logits, span), labels, mask, target_logits,
                           direction=tc.ka.direction, temperature=tc.ka.temperature, beta=tc.ka.jsd_beta,
                           ce_weight=tc.ka.ce_weight, target_topk=target_topk)
        runner.backward(part.loss / answer_tokens * runner.loss_scale, last=k == len(batches) - 1)
        sums += torch.tensor([float(part.loss.detach()), float(part.kl), float(part.ce)], dtype=torch.float64)
    runner.step()
    totals = [global_sum(float(v), on) for v in sums]
    tokens = global_sum(seen, on)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.monotonic() - started
    return {"loss": totals[0] / answer_tokens, "kl": totals[1] / answer_tokens,
            "ce": totals[2] / answer_tokens, "lr": lr, "answer_tokens": int(answer_tokens),
            "tokens": int(tokens), "step_s": seconds, "tokens_per_s": tokens / max(seconds, 1e-9)}


def worker_nodes(earlier: list[str], world: int) -> list[str]:
    """The nodes of every worker of this attempt (gathered over the process group) and of earlier ones."""
    import torch.distributed as dist

    from kale_ray.ray_utils import this_node

    mine = [this_node()]
    if world > 1 and dist.is_initialized():
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, mine[0])
        mine = [str(n) for n in gathered]
    return sorted(set(earlier) | set(mine))


def train_loop_per_worker(config: dict[str, Any]) -> None:
    from kale_ray.env import deepspeed_env

    for key, value in deepspeed_env(config["use_gpu"]).items():
        os.environ.setdefault(key, value)
    import ray.train
    import torch

    from kale_ray.train.runners import make_runner, prepare_deepspeed
    from kale_ray.train.targets import frozen_target

    tc = TrainConfig.model_validate(config["train"])
    method, run_dir = config["method"], Path(config["run_dir"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device() if config["use_gpu"] else torch.device("cpu")
    total_steps, steps_per_epoch = config["total_steps"], config["steps_per_epoch"]

    # The thread count follows the config, not the machine (it changes float reduction order, so losses
    # and the trained weights would differ between machines with different core counts).
    torch.set_num_threads(max(1, int(tc.cpus_per_worker)))
    torch.manual_seed(config["seed"])
    if tc.strategy == "deepspeed":
        prepare_deepspeed()  # before a ZeRO-3 load, whose zero.Init joins DeepSpeed's process group
    attn = config.get("attn_implementation")
    model = build_model(config["model_path"], tc, attn_implementation=attn, world=world)
    runner = make_runner(model, tc, total_steps, world, device)
    frozen = frozen_target(method, tc, runner, lambda: build_model(
        config["model_path"], tc, trainable=False, attn_implementation=attn).to(device))
    if rank == 0:
        for note in runner.notes + lever_notes(tc, method):
            print(f"train[{method}]: {note}", flush=True)

    state = TrainState(total_steps=total_steps, steps_per_epoch=steps_per_epoch)
    resumed_from = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            saved = read_state(Path(directory))
            runner.load(Path(directory))
        state.step, state.attempt, resumed_from = saved.step, saved.attempt + 1, saved.step
        state.nodes = list(saved.nodes)
        if rank == 0:
            print(f"train[{method}]: resumed from the checkpoint of step {saved.step}", flush=True)
    state.nodes = worker_nodes(state.nodes, world)
    names = (config.get("experiment", "kale-ray"), config.get("run_label", run_dir.name))
    logger = StepLogger(run_dir, method, total_steps, state.step, tc, names) if rank == 0 else None

    def save(final: bool, metrics: dict[str, Any]) -> None:
        state.final = final
        with tempfile.TemporaryDirectory(prefix="kale-ckpt-") as tmp:
            runner.save(Path(tmp))
            if final and config["export"]:
                with runner.gathered():
                    if rank == 0:
                        runner.module.save_pretrained(Path(tmp) / EXPORT_DIR, safe_serialization=True)
            if rank == 0:
                write_state(Path(tmp), state)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp),
                             checkpoint_dir_name=checkpoint_dir_name(state.step))

    shard = ray.train.get_dataset_shard("train")
    record: dict[str, Any] = {}
    while state.step < total_steps:
        before = state.step
        state.epoch = state.step // steps_per_epoch
        skip = state.micro_batches_to_skip(tc.grad_accum)
        window: list[dict[str, Any]] = []
        for index, batch in enumerate(shard.iter_batches(batch_size=tc.micro_batch_size, batch_format="numpy",
                                                         drop_last=True)):
            if index < skip:
                continue
            window.append(batch)
            if len(window) < tc.grad_accum:
                continue
            record = train_step(window, method=method, tc=tc, runner=runner, frozen=frozen,
                                pad_id=config["pad_id"], device=device)
            window = []
            state.step += 1
            record.update(step=state.step, epoch=state.epoch, method=method, workers=world,
                          resumed_from=resumed_from)
            if logger and (state.step % tc.log_every == 0 or state.step == total_steps):
                logger.log(record)
            if state.step == total_steps:
                break
            if state.step % tc.checkpoint.every == 0:
                save(False, {k: record[k] for k in ("step", "loss")})
            if state.step % steps_per_epoch == 0:
                break
        if state.step == before:
            raise RuntimeError(f"worker {rank}: its data shard did not fill one optimizer step")
    save(True, {k: record.get(k, 0.0) for k in ("step", "loss")} | {"step": state.step, "nodes": state.nodes})
    write_memory_report(run_dir, rank, runner.module, device)
    if logger:
        logger.close()
    # What this worker wrote beside the checkpoints (its memory report; on rank 0 the metrics and the
    # trackers' files) reaches an object-store workdir from the node it ran on.
    storage.publish(run_dir)
