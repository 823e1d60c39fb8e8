"""The text formats every stage agrees on: training views, scoring prompts, answer continuations.

Training (both KA views and SFT) and evaluation use the same cloze-style prompt, as
lm-evaluation-harness does for ARC: the model sees `Question: ...\nAnswer:` and the answer is the
continuation ` <option text>`. The KA target view inserts the rationale before `Answer:`; the answer
tokens are identical in both views.
"""

from __future__ import annotations

INSTRUCTION = "Answer the question."


def prompt_text(question: str, rationale: str | None = None) -> str:
    """The no-rationale view (rationale None) or the with-rationale view of one question."""
    body = f"{INSTRUCTION}\nQuestion: {question.strip()}\n"
    if rationale:
        body += f"Rationale: {rationale.strip()}\n"
    return body + "Answer:"


def answer_text(answer: str) -> str:
    """The continuation scored or trained on: a leading space, then the answer."""
    return " " + answer.strip()
