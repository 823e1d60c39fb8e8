"""The one interface every rationale writer implements, so the pipeline never knows which it drives."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    """One rationale to write: the chat messages plus the row (the template backend reads the row)."""

    messages: list[dict[str, str]]
    row: dict[str, Any]
    ki: bool


@dataclass
class Generation:
    """What a writer returned for one request; `error` set means no usable text and says why."""

    text: str | None = None
    tokens: int = 0
    finish_reason: str | None = None  # "stop" | "length" | None on error
    error: str | None = None
    error_kind: str | None = None     # "context_length" | "endpoint" | "generation"
    prompt: str = ""
    extra: dict[str, int] = field(default_factory=dict)  # e.g. {"retries": 2}


class Backend(ABC):
    """A rationale writer. Built once per actor (model loads are expensive), then fed batches."""

    name: str = "backend"
    llm: bool = True  # a language model writes (its output may loop); False for the template writer
    needs_paths: bool = False  # writes only from KG paths (the template): rows without get no rationale

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Generator metadata stored with every row: backend, model, sampling parameters, seed."""

    @abstractmethod
    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt text the writer sees for these messages."""

    @abstractmethod
    def generate(self, requests: list[Request]) -> list[Generation]:
        """One Generation per request, in order. Per-row problems are returned, not raised."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Free the engine (vLLM holds memory and processes)."""


def sampling(cfg: Any, seed: int) -> dict[str, Any]:
    anti_loop = {"repetition_penalty": cfg.repetition_penalty, "no_repeat_ngram_size": cfg.no_repeat_ngram_size} \
        if cfg.repetition_penalty != 1.0 or cfg.no_repeat_ngram_size else {}
    return {"max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature, "top_p": cfg.top_p,
            "seed": seed, **anti_loop}


def context_error(prompt_tokens: int, max_new_tokens: int, max_len: int) -> Generation | None:
    """A prompt that leaves no room for the rationale within the context is a row error, not a crash."""
    if prompt_tokens + max_new_tokens <= max_len:
        return None
    return Generation(error=(f"prompt over the context length: {prompt_tokens} prompt tokens + "
                             f"{max_new_tokens} new tokens > {max_len}"), error_kind="context_length")
