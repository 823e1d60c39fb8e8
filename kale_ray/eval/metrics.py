"""Per-item scores: multiple choice by option log-likelihood, generative answers by exact match.

`acc` and `acc_norm` follow lm-evaluation-harness: acc is the argmax of the summed log-likelihood
of each option, acc_norm the argmax of log-likelihood divided by the option's length in characters.
"""

from __future__ import annotations

import re
import string
from typing import Any


def argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: values[i])


def mc_scores(lls: list[float], choices: list[str], gold: int) -> dict[str, Any]:
    norm = [ll / max(len(c), 1) for ll, c in zip(lls, choices, strict=True)]
    pred, pred_norm = argmax(lls), argmax(norm)
    return {"lls": lls, "pred": pred, "pred_norm": pred_norm, "acc": float(pred == gold),
            "acc_norm": float(pred_norm == gold)}


_PUNCT = string.punctuation + " \t\n"


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().strip(_PUNCT.replace("(", "").replace(")", "")).strip().lower())


def extract_answer(generated: str) -> str:
    """The first non-empty line, after an "answer is" phrase when the model wrote one."""
    text = generated.strip()
    found = re.search(r"answer is:?\s*(.+)", text, re.I)
    if found:
        text = found.group(1)
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def exact_match(extracted: str, answers: list[str]) -> float:
    """Equal after normalising case, whitespace and end punctuation; an option letter `(A)` also
    matches `A` and `(A) text`."""
    got = normalize(extracted)
    for answer in answers:
        want = normalize(answer)
        if got == want:
            return 1.0
        letter = re.fullmatch(r"\(([a-z])\)", want)
        if letter and (got == letter.group(1) or re.match(rf"\(?{letter.group(1)}\)(\s|$)", got)):
            return 1.0
    return 0.0
