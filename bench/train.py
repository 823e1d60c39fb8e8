"""Seconds per optimizer step of `ka` vs `sft` on the same batches and model, measured in one run.

KA adds a no-grad forward of the with-rationale view to SFT's forward+backward of the plain view, so
the ratio should stay <= 1.4 (the paper's reviewers asked about the second pass's cost). Both methods
run the trainer's own `train_step` (single process, the DDP runner without a process group) on real
ARC-Easy rows with rationales, the real SmolLM2-135M-Instruct and LoRA; steps alternate ka/sft so
machine load hits both alike. Prints the median seconds/step, tokens/s and the ratio. `ka` runs the
target view on the plain view's prefix cache (train.ka.share_prefix, the default); `ka_unshared` is the
full second pass, measured in the same run as the before/after reference. `ka_cached` reads q's top-k
(train.ka.target=cached, k = train.ka.target_topk) computed once beforehand, as the Ray Data pass of
train/target_cache.py does, so its step has no target pass at all: the target is <= 1.1 x sft.

    PYTHONPATH=$PWD python bench/train.py [--steps 8] [--batch 4] [--full] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per method")
    parser.add_argument("--batch", type=int, default=4, help="rows per step")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    parser.add_argument("--no-unshared", action="store_true",
                        help="skip the ka run with train.ka.share_prefix=false (the full second pass)")
    parser.add_argument("--no-cached", action="store_true", help="skip the ka run with train.ka.target=cached")
    parser.add_argument("--topk", type=int, default=None, help="train.ka.target_topk of ka_cached (default: the config's)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on a shared 2-core machine more threads fight for cores)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from kale_ray.config import load_config
    from kale_ray.config.train import KAConfig, LoraConfig, OptimConfig, TrainConfig
    from kale_ray.engines.loading import load_tokenizer
    from kale_ray.engines.registry import prepare_model
    from kale_ray.train.collate import tokenize_rows
    from kale_ray.train.loop import build_model, train_step
    from kale_ray.train.runners import DDPRunner
    from kale_ray.train.target_cache import attach_cache, row_targets
    from tests.train_data import arc_rows, with_rationales

    cfg = load_config()
    path = str(prepare_model("smollm2-135m-instruct"))
    tokenizer = load_tokenizer(path)
    rows = with_rationales(arc_rows(cfg.data_root, args.batch * 4))
    device = torch.device(args.device)
    total = 2 * (args.steps + 1)
    runs = {}
    lengths: dict[str, float] = {}
    variants = {"ka": ("ka", True, "live"), "sft": ("sft", True, "live")}
    if not args.no_unshared:
        variants["ka_unshared"] = ("ka", False, "live")
    if not args.no_cached:
        variants["ka_cached"] = ("ka", True, "cached")
    for name, (method, share, target) in variants.items():
        ka = KAConfig(share_prefix=share, target=target, **({"target_topk": args.topk} if args.topk else {}))
        tc = TrainConfig(method=method, optim=OptimConfig(lr=1e-4, schedule="constant"), max_length=args.max_length,
                         micro_batch_size=args.batch, precision=args.precision, strategy="ddp",
                         lora=LoraConfig(enabled=not args.full), ka=ka)
        tokens, _ = tokenize_rows(tokenizer, rows, method, args.max_length)
        if target == "cached":  # the cache pass, done once before training (not timed)
            initial = build_model(path, tc, trainable=False).to(device)
            tokens = attach_cache(tokens, row_targets(initial, tokens.to_pydict(), tokenizer.pad_token_id,
                                                      tc.ka.target_topk, tc.ka.temperature, device))
            del initial
        batches = [tokens.slice(i * args.batch, args.batch).to_pydict() for i in range(4)]
        for view in ("student_ids", "target_ids"):
            lengths.setdefault(view, statistics.mean(len(t) for t in tokens.column(view).to_pylist()))
        torch.manual_seed(0)
        runner = DDPRunner(build_model(path, tc), tc, total, 1, device)
        runs[name] = (tc, runner, batches)
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}  # CPU seconds: what load on a shared machine barely moves
    tokens_s: dict[str, list[float]] = {name: [] for name in runs}
    for step in range(args.steps + 1):
        for name, (tc, runner, batches) in runs.items():
            t0, c0 = time.perf_counter(), time.process_time()
            rec = train_step([batches[step % 4]], method=tc.method, tc=tc, runner=runner, frozen=None,
                             pad_id=tokenizer.pad_token_id, device=device)
            if step:  # the first step of each warms up
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
                tokens_s[name].append(rec["tokens_per_s"])
    result = {m: {"s_per_step": statistics.median(times[m]), "cpu_s_per_step": statistics.median(cpu[m]),
                  "tokens_per_s": statistics.median(tokens_s[m])} for m in times}
    for name in [n for n in ("ka", "ka_unshared", "ka_cached") if n in result]:
        for key, label in (("s_per_step", "ratio"), ("cpu_s_per_step", "cpu_ratio")):
            result[f"{label}_{name}_over_sft"] = result[name][key] / result["sft"][key]
    result["mean_tokens"] = {"plain_view": lengths["student_ids"], "rationale_view": lengths["target_ids"]}
    result["setup"] = {"steps": args.steps, "batch": args.batch, "max_length": args.max_length,
                       "device": args.device, "precision": args.precision, "topk": args.topk or KAConfig().target_topk,
                       "lora": not args.full, "load_average": os.getloadavg(), "threads": torch.get_num_threads()}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
