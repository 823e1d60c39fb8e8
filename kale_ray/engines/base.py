"""What every engine (transformers, vLLM) shares: the result types and the tokenizer-side helpers, so
the API layer, evaluation, probing and synthesis work the same on either engine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Scored:
    """Log-probs of each token of a sequence given the tokens before it (the first token has none)."""

    ids: list[int]
    logprobs: list[float | None]
    top: list[dict[int, float] | None]  # the `top` most likely ids at each position (with the actual one)
    greedy: list[bool]

    def then(self, more: Scored) -> Scored:
        """This sequence followed by `more`, scored where it left off (a prefix and its tail)."""
        return Scored(self.ids + more.ids, self.logprobs + more.logprobs, self.top + more.top,
                      self.greedy + more.greedy)


@dataclass
class GenerationRequest:
    """One prompt to continue and how. Every field is per request, so requests with different
    settings decode in one batch."""

    ids: list[int]
    max_tokens: int
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)  # the text ends before the first of these
    seed: int | None = None  # sampling: the request's own generator, so its draws ignore the batch
    top: int = 0  # also keep the `top` most likely tokens' log-probs at each step
    echo: bool = False  # also score the prompt (Generation.prompt)
    # Anti-looping, over the tokens generated so far (not the prompt: a rationale must be free to repeat
    # the question's and the answer's words): a logit over 0 is divided by the penalty, one below
    # multiplied (CTRL's penalty, as transformers applies it); with n > 0 no n-gram is generated twice.
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0


@dataclass
class Generation:
    ids: list[int]  # generated tokens, an ending EOS included
    logprobs: list[float]
    top: list[dict[int, float]]
    finish_reason: str  # "stop" (EOS or a stop string) | "length"
    text: str  # without the EOS and from the first stop string on
    prompt: Scored | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class ContextLengthError(ValueError):
    """A prompt (plus the tokens asked for) longer than the model's context."""


class EngineBase:
    """What the API layer needs from any engine's tokenizer: ids, text, offsets, limits."""

    tokenizer: Any
    context_length: int
    vocab_size: int
    adapters: list[str]
    default_adapter: str | None = None  # what `adapter=None` runs: a bare adapter directory's own LoRA
    scoring_tokens = 0  # tokens an engine must generate to score a prompt (vLLM: 1), so room it needs

    # -- text <-> tokens -------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def token_text(self, token_id: int) -> str:
        """A token's own text (echo and logprobs answers name every token: cached per engine)."""
        cache: dict[int, str] = self.__dict__.setdefault("_token_texts", {})
        text = cache.get(token_id)
        if text is None:
            text = cache[token_id] = self.tokenizer.decode([token_id])
        return text

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                 return_dict=True)["input_ids"]
        return list(ids)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """The chat template's text of `messages`, ending where the assistant's reply starts."""
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """lm-evaluation-harness's split: encode the whole, then take the context's tokens off the
        front, with trailing spaces of the context moved to the continuation."""
        spaces = len(context) - len(context.rstrip(" "))
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = self.encode(context + continuation)
        n_ctx = len(self.encode(context))
        return whole[:n_ctx], whole[n_ctx:]

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[int]]:
        """Token ids and the character offset where each starts in `text`."""
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [int(a) for a, _ in enc["offset_mapping"]]

    def check_length(self, n_prompt: int, max_tokens: int = 0) -> None:
        if n_prompt + max(max_tokens, self.scoring_tokens) > self.context_length:
            raise ContextLengthError(
                f"this model's maximum context length is {self.context_length} tokens; the prompt has "
                f"{n_prompt} tokens and {max(max_tokens, self.scoring_tokens)} more were requested")

    def check_ids(self, ids: Sequence[int]) -> None:
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"token ids out of range [0, {self.vocab_size}): {bad[:5]}")

    # -- scoring -----------------------------------------------------------------------------------
    def score(self, seqs: list[list[int]], adapter: str | None = None, top: int = 0) -> list[Scored]:
        raise NotImplementedError

    def loglikelihood(self, pairs: list[tuple[str, str]], adapter: str | None = None) -> list[tuple[float, bool]]:
        """Sum of the continuation's token log-probs given the context, and whether it is the greedy
        continuation: lm-evaluation-harness's loglikelihood request, contexts cut from the left."""
        seqs, n_cont = self.pair_sequences(pairs)
        return self.sum_continuations(self.score(seqs, adapter), n_cont)

    def pair_sequences(self, pairs: list[tuple[str, str]]) -> tuple[list[list[int]], list[int]]:
        """(whole token sequence, continuation length) per pair, cut from the left to fit the context."""
        seqs, n_cont = [], []
        prefix = self.tokenizer.eos_token_id or 0
        for context, continuation in pairs:
            ctx, cont = self.encode_pair(context, continuation)
            seq = (ctx or [prefix]) + cont  # an empty context scores from the end-of-text token
            seqs.append(seq[-(self.context_length - self.scoring_tokens):])
            n_cont.append(len(cont))
        return seqs, n_cont

    @staticmethod
    def sum_continuations(scored: list[Scored], n_cont: list[int]) -> list[tuple[float, bool]]:
        out = []
        for one, n in zip(scored, n_cont, strict=True):
            lps = one.logprobs[len(one.logprobs) - n:]
            out.append((float(sum(x for x in lps if x is not None)), all(one.greedy[len(one.greedy) - n:])))
        return out

    # -- generation --------------------------------------------------------------------------------
    def generate_batch(self, requests: Sequence[GenerationRequest], adapter: str | None = None) -> list[Generation]:
        """One Generation per request, in order; raises ContextLengthError if any does not fit."""
        raise NotImplementedError

    def generate(self, ids: list[int], max_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
                 stop: list[str] | None = None, seed: int | None = None, adapter: str | None = None,
                 top: int = 0, echo: bool = False) -> Generation:
        """One prompt: a batch of one."""
        request = GenerationRequest(list(ids), max_tokens, temperature, top_p, list(stop or []), seed, top, echo)
        return self.generate_batch([request], adapter)[0]
