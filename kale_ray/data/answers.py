"""Reading an answer out of generated text and matching it to the gold answers.

The eval stage scores generative benchmarks (BBH) with these, and the probe labels sampled answers with
the same normalisation, so both live below either stage.
"""

from __future__ import annotations

import re
import string

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
