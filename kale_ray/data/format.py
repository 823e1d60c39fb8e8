"""The text formats every stage agrees on: training views, scoring prompts, answer continuations.

`PromptFormat` is the one place a prompt is formatted; training (both KA views and SFT), evaluation
and the knowledge probe all go through it.

The default is the cloze-style prompt lm-evaluation-harness uses for ARC: the model sees
`Question: ...\\nAnswer:` and the answer is the continuation ` <option text>`. The KA target view
inserts the rationale before `Answer:`; the answer tokens are identical in both views.

With `data.chat_template=true` (an instruct model) the same question (and rationale) is one user
message, rendered by the tokenizer's chat template up to where the assistant's reply starts, and the
answer is the reply's text (no leading space): exactly the tokens /v1/chat/completions sends for
`chat_messages(question)` (the server renders messages with the same template), so the model is
trained and scored on what it is asked in production.
"""

from __future__ import annotations

import functools
from typing import Any

INSTRUCTION = "Answer the question."


def user_text(question: str, rationale: str | None = None) -> str:
    """The question (and rationale) without the cloze's `Answer:` cue: a chat's user message."""
    body = f"{INSTRUCTION}\nQuestion: {question.strip()}\n"
    if rationale:
        body += f"Rationale: {rationale.strip()}\n"
    return body


def prompt_text(question: str, rationale: str | None = None) -> str:
    """The cloze format's no-rationale view (rationale None) or with-rationale view of one question."""
    return user_text(question, rationale) + "Answer:"


def answer_text(answer: str) -> str:
    """The cloze continuation scored or trained on: a leading space, then the answer."""
    return " " + answer.strip()


def chat_messages(question: str, rationale: str | None = None) -> list[dict[str, str]]:
    """The chat request of one question: what a client posts to /v1/chat/completions."""
    return [{"role": "user", "content": user_text(question, rationale).rstrip("\n")}]


class PromptFormat:
    """Prompt and answer text of either format; the chat format needs the model's tokenizer."""

    def __init__(self, tokenizer: Any = None, chat_template: bool = False) -> None:
        if chat_template and not getattr(tokenizer, "chat_template", None):
            raise ValueError("data.chat_template=true needs a tokenizer with a chat template "
                             "(the model has none: use the cloze format, data.chat_template=false)")
        self.tokenizer, self.chat = tokenizer, chat_template

    def prompt(self, question: str, rationale: str | None = None) -> str:
        if not self.chat:
            return prompt_text(question, rationale)
        return self.tokenizer.apply_chat_template(chat_messages(question, rationale), tokenize=False,
                                                  add_generation_prompt=True)

    def answer(self, answer: str) -> str:
        return answer.strip() if self.chat else answer_text(answer)


CLOZE = PromptFormat()


def prompt_format(cfg: Any) -> PromptFormat:
    """The run's format: the cloze one, or the chat template of the config's model."""
    if not cfg.data.chat_template:
        return CLOZE
    return _chat_format(cfg.model.name_or_path, cfg.model.cache_dir)


@functools.lru_cache(maxsize=4)
def _chat_format(name_or_path: str, cache_dir: Any) -> PromptFormat:
    from kale_ray.engines.loading import load_tokenizer
    from kale_ray.engines.registry import resolve_model

    return PromptFormat(load_tokenizer(resolve_model(name_or_path, cache_dir)), chat_template=True)
