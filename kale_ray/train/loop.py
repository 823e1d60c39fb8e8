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

from kale_ray.config.train import TrainConfig
from kale_ray.train.checkpoint import EXPORT_DIR, TrainState, checkpoint_dir_name, read_state, write_state


def build_model(path: str, tc: TrainConfig, trainable: bool = True) -> Any:
    from kale_ray.engines.loading import load_causal_lm

    dtype = "bfloat16" if (tc.precision == "bf16" and not trainable) else "float32"
    model = load_causal_lm(path, dtype=dtype, trainable=trainable)
    model.config.use_cache = False
    if not trainable:  # load_causal_lm already put it in eval mode with gradients off
        return model
    if tc.lora.enabled:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=tc.lora.r, lora_alpha=tc.lora.alpha, lora_dropout=tc.lora.dropout,
            target_modules=tc.lora.targets, task_type="CAUSAL_LM"))
    return model


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
    share = method == "ka" and tc.ka.share_prefix and frozen is None and not cached  # a frozen q has other weights
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


def train_loop_per_worker(config: dict[str, Any]) -> None:
    from kale_ray.env import deepspeed_env

    for key, value in deepspeed_env(config["use_gpu"]).items():
        os.environ.setdefault(key, value)
    import ray.train
    import torch

    from kale_ray.train.runners import make_runner
    from kale_ray.train.targets import frozen_target

    tc = TrainConfig.model_validate(config["train"])
    method, run_dir = config["method"], Path(config["run_dir"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device() if config["use_gpu"] else torch.device("cpu")
    total_steps, steps_per_epoch = config["total_steps"], config["steps_per_epoch"]

    torch.manual_seed(config["seed"])
    model = build_model(config["model_path"], tc)
    runner = make_runner(model, tc, total_steps, world, device)
    frozen = frozen_target(method, tc, runner,
                           lambda: build_model(config["model_path"], tc, trainable=False).to(device))

    state = TrainState(total_steps=total_steps, steps_per_epoch=steps_per_epoch)
    resumed_from = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            saved = read_state(Path(directory))
            runner.load(Path(directory))
        state.step, state.attempt, resumed_from = saved.step, saved.attempt + 1, saved.step
        if rank == 0:
            print(f"train[{method}]: resumed from the checkpoint of step {saved.step}", flush=True)
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
    save(True, {k: record.get(k, 0.0) for k in ("step", "loss")} | {"step": state.step})
    if logger:
        logger.close()
