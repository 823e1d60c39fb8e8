"""A deterministic rationale from the verbalised paths, no LLM: for tests, CPU demos, and a labelled
control of the study. It verbalises the KG paths and nothing else: it never states the answer on its own
("The answer is X" would make the KA teacher an answer-told model), so a row without paths gets no
rationale from it (status `no_rationale`), and it cannot write the w/o-KI ablation."""

from __future__ import annotations

from typing import Any

from kale_ray.synth.backends.base import Backend, Generation, Request
from kale_ray.synth.prompts import facts, plain_render


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def template_rationale(row: dict[str, Any], ki: bool, max_paths: int) -> str | None:
    """The row's paths as sentences; None when there is no path to verbalise (or ki is off)."""
    found = facts(row, max_paths) if ki else []
    return " ".join(_sentence(f) for f in found) if found else None


class TemplateBackend(Backend):
    name = "template"
    llm = False
    needs_paths = True

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
            if text is None:
                out.append(Generation(error="the template writer has no path to verbalise", error_kind="no_paths",
                                      prompt=self.render(req.messages)))
                continue
            out.append(Generation(text=text, tokens=len(text.split()), finish_reason="stop",
                                  prompt=self.render(req.messages)))
        return out
