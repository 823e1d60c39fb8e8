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

# The measurement itself lives in the library (the pre-check uses it too).
from kale_ray.study.answer_views import answer_view_stats


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
