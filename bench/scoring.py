"""In-process multiple-choice scoring: kale-ray's engine against lm-evaluation-harness's hf backend.

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python bench/scoring.py --items 200 --threads 2

Both score the same items of one benchmark (default bbh-hyperbaton: two options, long ones), with the
same model, prompt, batch size and torch threads, alternating `--rounds` times so machine load hits
both alike. It prints the median wall and CPU seconds of each, the ratio lm-eval / kale-ray (target
>= 1.2: kale-ray at least 1.2x faster), the tokens each ran through the model, and how many items
both predict alike (log-likelihoods must agree within 1e-3, or the script exits non-zero).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default="bbh-hyperbaton")
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64, help="both: sequences per forward (eval.batch_size)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from kale_ray.config import load_config
    from kale_ray.data.benchmarks import load_benchmark
    from kale_ray.data.format import answer_text, prompt_text
    from kale_ray.engines.registry import resolve_model
    from kale_ray.eval.scorers import LocalScorer

    torch.set_num_threads(args.threads)
    cfg = load_config(None, [])
    path = resolve_model(cfg.model.name_or_path)
    rows = [r for r in load_benchmark(args.benchmark, cfg.data_root).to_pylist() if r["gold"] >= 0][: args.items]
    pairs = [(prompt_text(r["question"]), answer_text(c)) for r in rows for c in r["choices"]]

    ours = LocalScorer(path, batch_size=args.batch_size)
    theirs = HFLM(pretrained=path, device="cpu", dtype="float32", batch_size=args.batch_size)
    requests = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]

    def run_ours() -> list[float]:
        return ours.loglikelihood(pairs)

    def run_theirs() -> list[float]:
        return [ll for ll, _ in theirs.loglikelihood(requests, disable_tqdm=True)]

    run_ours(), run_theirs()  # warm-up (allocator, kernels)
    times: dict[str, list[tuple[float, float]]] = {"kale_ray": [], "lm_eval": []}
    results: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, fn in (("kale_ray", run_ours), ("lm_eval", run_theirs)):
            wall, cpu = time.perf_counter(), time.process_time()
            results[name] = fn()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))

    diffs = [abs(a - b) for a, b in zip(results["kale_ray"], results["lm_eval"], strict=True)]
    same = 0
    it_a, it_b = iter(results["kale_ray"]), iter(results["lm_eval"])
    for r in rows:
        a = [next(it_a) for _ in r["choices"]]
        b = [next(it_b) for _ in r["choices"]]
        same += a.index(max(a)) == b.index(max(b))
    seqs, n_cont = ours.engine.pair_sequences(pairs)
    tokens = {"kale_ray": _our_tokens(seqs, n_cont), "lm_eval": sum(len(s) for s in seqs)}
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}
    result = {"benchmark": args.benchmark, "items": len(rows), "options": len(pairs), "batch_size": args.batch_size,
              "threads": args.threads, "rounds": args.rounds,
              "kale_ray_s": med["kale_ray"][0], "lm_eval_s": med["lm_eval"][0],
              "kale_ray_cpu_s": med["kale_ray"][1], "lm_eval_cpu_s": med["lm_eval"][1],
              "speedup_wall": med["lm_eval"][0] / med["kale_ray"][0],
              "speedup_cpu": med["lm_eval"][1] / med["kale_ray"][1],
              "tokens_forwarded": tokens, "max_abs_ll_diff": max(diffs), "same_prediction": same}
    print(json.dumps(result, indent=2))
    print(f"\n{len(rows)} {args.benchmark} items ({len(pairs)} options), batch {args.batch_size}, "
          f"{args.threads} threads: kale-ray {med['kale_ray'][0]:.2f}s, lm-eval hf {med['lm_eval'][0]:.2f}s, "
          f"lm-eval / kale-ray = {result['speedup_wall']:.2f}x wall, {result['speedup_cpu']:.2f}x CPU (target >= 1.2); "
          f"tokens {tokens['kale_ray']} vs {tokens['lm_eval']}; same prediction on {same}/{len(rows)}, "
          f"max |ll diff| {max(diffs):.2e}")
    return 0 if max(diffs) < 1e-3 else 1


def _our_tokens(seqs: list[list[int]], n_cont: list[int]) -> int:
    """Tokens kale-ray's engine runs: each distinct context once, then each continuation but its last."""
    contexts = {tuple(s[: len(s) - n]) for s, n in zip(seqs, n_cont, strict=True)}
    return sum(len(c) for c in contexts) + sum(max(n - 1, 0) for n in n_cont)


if __name__ == "__main__":
    sys.exit(main())
