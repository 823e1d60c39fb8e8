"""Per-item scores of multiple choice by option log-likelihood (generative answers: data/answers.py).

`acc` and `acc_norm` follow lm-evaluation-harness: acc is the argmax of the summed log-likelihood
of each option, acc_norm the argmax of log-likelihood divided by the option's length in characters.
"""

from __future__ import annotations

from typing import Any


def argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: values[i])


def mc_scores(lls: list[float], choices: list[str], gold: int) -> dict[str, Any]:
    norm = [ll / max(len(c), 1) for ll, c in zip(lls, choices, strict=True)]
    pred, pred_norm = argmax(lls), argmax(norm)
    return {"lls": lls, "pred": pred, "pred_norm": pred_norm, "acc": float(pred == gold),
            "acc_norm": float(pred_norm == gold)}
