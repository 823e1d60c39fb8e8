"""A deterministic rationale from the verbalised paths, no LLM: for tests, CPU demos and baselines."""

from __future__ import annotations

from typing import Any

from kale_ray.synth.backends.base import Backend, Generation, Request
from kale_ray.synth.prompts import facts, plain_render


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def template_rationale(row: dict[str, Any], ki: bool, max_paths: int) -> str:
    answer = row["gold_text"].strip()
    found = facts(row, max_paths) if ki else []
    if found:
        body = " ".join(_sentence(f) for f in found)
        return f"{body} These facts lead from the question to the answer: {_sentence(answer)}"
    return f"The answer to this question is {_sentence(answer)}"


class TemplateBackend(Backend):
    name = "template"
    llm = False

    def __init__(self, max_paths: int) -> None:
        self.max_paths = max_paths

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": None, "max_paths": self.max_paths}

    def render(self, messages: list[dict[str, str]]) -> str:
        return plain_render(messages)

    def generate(self, requests: list[Request]) -> list[Generation]:
        out = []
        for req in requests:
            text = template_rationale(req.row, req.ki, self.max_paths)
            out.append(Generation(text=text, tokens=len(text.split()), finish_reason="stop",
                                  prompt=self.render(req.messages)))
        return out
