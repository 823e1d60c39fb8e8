"""Per answer token, on a training run's own tokenized rows: the plain view's cross-entropy, the
with-rationale view's cross-entropy and KL(p||q), for the base model and trained models. It shows
whether KA moved the plain view toward the gold answer or only toward the rationale view; the
study's discussion quotes its output file.

    .venv/bin/python scripts/answer_views.py --tokens artifacts/study-template/train/ka-s0/tokens.parquet \
        --rows 48 --out docs/answer_views.json BASE=~/.cache/kale-ray/models/smollm2-135m-instruct \
        KALE=artifacts/study-template/train/ka-s0/final SFT=artifacts/study-template/train/sft-s0/final
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def answer_view_stats(model_path: str, rows: list[dict]) -> dict[str, float]:
    import torch

    from kale_ray.engines.loading import load_causal_lm

    model = load_causal_lm(model_path, dtype="float32")
    sums = {"ce_plain": 0.0, "ce_rationale": 0.0, "kl_plain_to_rationale": 0.0, "top1_plain": 0.0,
            "top1_rationale": 0.0}
    tokens = 0
    with torch.no_grad():
        for row in rows:
            span = row["answer_len"]
            labels = torch.tensor(row["student_ids"][-span:])
            lp, lq = (model(torch.tensor([row[k]])).logits[0, -span - 1:-1].log_softmax(-1)
                      for k in ("student_ids", "target_ids"))
            sums["ce_plain"] -= lp.gather(1, labels[:, None]).sum().item()
            sums["ce_rationale"] -= lq.gather(1, labels[:, None]).sum().item()
            sums["kl_plain_to_rationale"] += (lp.exp() * (lp - lq)).sum().item()
            sums["top1_plain"] += (lp.argmax(-1) == labels).sum().item()
            sums["top1_rationale"] += (lq.argmax(-1) == labels).sum().item()
            tokens += span
    return {k: round(v / tokens, 4) for k, v in sums.items()} | {"answer_tokens": tokens}


def main() -> None:
    import pyarrow.parquet as pq
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", required=True, help="a KA run's tokens.parquet (both views per row)")
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--out", required=True)
    parser.add_argument("models", nargs="+", help="LABEL=model path")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = pq.read_table(args.tokens).slice(0, args.rows).to_pylist()
    result = {"tokens": args.tokens, "rows": len(rows), "models": {}}
    for spec in args.models:
        label, path = spec.split("=", 1)
        result["models"][label] = {"path": path, **answer_view_stats(str(Path(path).expanduser()), rows)}
        print(label, result["models"][label], flush=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
