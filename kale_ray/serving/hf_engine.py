"""The transformers engine: one base checkpoint plus LoRA adapters, used by Serve replicas and by
in-process evaluation, so both compute log-probabilities with the same code.

Adapters are loaded once into one peft model and chosen per call; calls are serialised with a lock
because switching the active adapter is shared state.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Scored:
    """Log-probs of each token of a sequence given the tokens before it (the first token has none)."""

    ids: list[int]
    logprobs: list[float | None]
    top: list[dict[int, float] | None]  # the `top` most likely ids at each position (with the actual one)
    greedy: list[bool]


@dataclass
class Generation:
    ids: list[int]
    logprobs: list[float]
    top: list[dict[int, float]]
    finish_reason: str  # "stop" (EOS or a stop string) | "length"
    text: str
    prompt: Scored | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class ContextLengthError(ValueError):
    """A prompt (plus the tokens asked for) longer than the model's context."""


def pick_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


class EngineBase:
    """What the API layer needs from any engine's tokenizer: ids, text, offsets, limits."""

    tokenizer: Any
    context_length: int
    vocab_size: int
    adapters: list[str]
    scoring_tokens = 0  # tokens an engine must generate to score a prompt (vLLM: 1), so room it needs

    # -- text <-> tokens -------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def token_text(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                 return_dict=True)["input_ids"]
        return list(ids)

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


CONT_CHUNK_TOKENS = 1024  # continuation tokens per forward when scoring on a shared context


class HFEngine(EngineBase):
    def __init__(self, path: str | Path, adapters: dict[str, str] | None = None, dtype: str = "float32",
                 device: str = "auto", max_batch_tokens: int = 8192, max_batch_seqs: int = 64) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = str(path)
        self.device = pick_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        model = AutoModelForCausalLM.from_pretrained(self.path, dtype=getattr(torch, dtype))
        self.adapters: list[str] = []
        if adapters:
            from peft import PeftModel

            items = list(adapters.items())
            model = PeftModel.from_pretrained(model, items[0][1], adapter_name=items[0][0])
            for name, adapter_path in items[1:]:
                model.load_adapter(adapter_path, adapter_name=name)
            self.adapters = [name for name, _ in items]
        self.model = model.to(self.device).eval()
        config = self.model.config
        self.context_length = int(getattr(config, "max_position_embeddings", 2048) or 2048)
        self.vocab_size = int(config.vocab_size)
        self.max_batch_tokens, self.max_batch_seqs = max_batch_tokens, max_batch_seqs
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (self.tokenizer.eos_token_id or 0))
        eos: set[int] = set()
        for source in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            if isinstance(source, int):
                eos.add(source)
            elif isinstance(source, list):
                eos.update(int(x) for x in source)
        self.eos_ids = eos
        self._lock = threading.Lock()

    # -- adapters ----------------------------------------------------------------------------------
    @contextmanager
    def _use(self, adapter: str | None) -> Iterator[None]:
        if not self.adapters:
            if adapter is not None:
                raise KeyError(adapter)
            with nullcontext():
                yield
            return
        if adapter is None:
            with self.model.disable_adapter():
                yield
            return
        if adapter not in self.adapters:
            raise KeyError(adapter)
        self.model.set_adapter(adapter)
        yield

    # -- scoring -----------------------------------------------------------------------------------
    def score(self, seqs: list[list[int]], adapter: str | None = None, top: int = 0) -> list[Scored]:
        """Every token's log-prob given its prefix, many sequences per forward (right-padded)."""
        import torch

        results: list[Scored | None] = [None] * len(seqs)
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        batches: list[list[int]] = []
        for i in order:
            if batches and len(batches[-1]) < self.max_batch_seqs \
                    and (len(batches[-1]) + 1) * len(seqs[batches[-1][0]]) <= self.max_batch_tokens:
                batches[-1].append(i)
            else:
                batches.append([i])
        with self._lock, torch.no_grad(), self._use(adapter):
            for batch in batches:
                width = len(seqs[batch[0]])
                ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    ids[row, : len(seqs[i])] = torch.tensor(seqs[i], dtype=torch.long)
                    mask[row, : len(seqs[i])] = 1
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
                for row, i in enumerate(batch):
                    results[i] = self._scored(seqs[i], logits[row, : len(seqs[i])], top)
        return [r for r in results if r is not None]

    def loglikelihood(self, pairs: list[tuple[str, str]], adapter: str | None = None) -> list[tuple[float, bool]]:
        """As `EngineBase.loglikelihood`, but pairs that share their context tokens (a question's
        options) run the context once and only the continuations on its key/value cache: the same
        numbers (tested against whole-sequence scoring) for a fraction of the work, since multiple-choice
        contexts are long and options short."""
        import torch

        seqs, n_cont = self.pair_sequences(pairs)
        groups: dict[tuple[int, ...], list[int]] = {}
        whole: list[int] = []  # a continuation that fills the whole window has no context to share
        for i, (seq, n) in enumerate(zip(seqs, n_cont, strict=True)):
            if n >= len(seq):
                whole.append(i)
            else:
                groups.setdefault(tuple(seq[: len(seq) - n]), []).append(i)
        out: list[tuple[float, bool]] = [(0.0, True)] * len(seqs)
        if whole:
            sums = self.sum_continuations(self.score([seqs[i] for i in whole], adapter), [n_cont[i] for i in whole])
            for i, value in zip(whole, sums, strict=True):
                out[i] = value
        with self._lock, torch.no_grad(), self._use(adapter):
            for context, members in groups.items():
                conts = [seqs[i][len(context):] for i in members]
                for i, value in zip(members, self._continuations(list(context), conts), strict=True):
                    out[i] = value
        return out

    def _continuations(self, context: list[int], conts: list[list[int]]) -> list[tuple[float, bool]]:
        """One forward over the context (last position's logits only), then the non-empty
        continuations, longest first, right-padded, in chunks of at most `CONT_CHUNK_TOKENS` tokens on
        copies of the context's cache (pads sit after every real token, so causal attention keeps them
        out of the real positions; chunks bound the [rows, width, vocab] logits)."""
        import copy

        import torch

        dev = self.device
        head = self.model(input_ids=torch.tensor([context], device=dev), use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(head.logits[0, -1].float(), dim=-1)
        first_best = int(first.argmax())
        out = [(0.0, True)] * len(conts)
        live = sorted((j for j, c in enumerate(conts) if c), key=lambda j: -len(conts[j]))
        for j in live:
            if len(conts[j]) == 1:
                out[j] = (float(first[conts[j][0]]), first_best == conts[j][0])
        longer = [j for j in live if len(conts[j]) > 1]
        while longer:
            width = len(conts[longer[0]]) - 1
            rows = max(1, min(self.max_batch_seqs, CONT_CHUNK_TOKENS // width))
            chunk, longer = longer[:rows], longer[rows:]
            cache = copy.deepcopy(head.past_key_values)
            cache.batch_repeat_interleave(len(chunk))
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            target = torch.full((len(chunk), width), 0, dtype=torch.long)
            for row, j in enumerate(chunk):
                cont = conts[j]
                ids[row, : len(cont) - 1] = torch.tensor(cont[:-1], dtype=torch.long)
                target[row, : len(cont) - 1] = torch.tensor(cont[1:], dtype=torch.long)
            logits = self.model(input_ids=ids.to(dev), past_key_values=cache).logits.float()
            target = target.to(logits.device)
            lp = (logits.gather(-1, target[..., None])[..., 0] - torch.logsumexp(logits, dim=-1)).tolist()
            greedy = (logits.argmax(-1) == target).tolist()
            for row, j in enumerate(chunk):
                cont, n = conts[j], len(conts[j]) - 1
                out[j] = (float(first[cont[0]]) + float(sum(lp[row][:n])),
                          first_best == cont[0] and all(greedy[row][:n]))
        return out

    def _scored(self, seq: list[int], logits: Any, top: int) -> Scored:
        import torch

        logits = logits.float()
        n = len(seq)
        if n < 2:
            return Scored(list(seq), [None] * n, [None] * n, [True] * n)
        target = torch.tensor(seq[1:], device=logits.device)
        lse = torch.logsumexp(logits[:-1], dim=-1)
        lp = logits[:-1].gather(-1, target[:, None])[:, 0] - lse
        greedy = (logits[:-1].argmax(-1) == target).tolist()
        tops: list[dict[int, float] | None] = [None]
        if top > 0:
            values, indices = logits[:-1].topk(top, dim=-1)
            values = values - lse[:, None]
            for pos in range(n - 1):
                entry = dict(zip(indices[pos].tolist(), values[pos].tolist(), strict=True))
                entry[seq[pos + 1]] = float(lp[pos])
                tops.append(entry)
        else:
            tops.extend({seq[pos + 1]: float(lp[pos])} for pos in range(n - 1))
        return Scored(list(seq), [None, *lp.tolist()], tops, [True, *greedy])

    # -- generation --------------------------------------------------------------------------------
    def generate(self, ids: list[int], max_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
                 stop: list[str] | None = None, seed: int | None = None, adapter: str | None = None,
                 top: int = 0, echo: bool = False) -> Generation:
        """Greedy or sampled decoding with a KV cache, keeping each new token's log-prob (raw model
        distribution) and, with `echo`, the prompt tokens' log-probs from the same first forward."""
        import torch

        self.check_length(len(ids), max_tokens)
        stop = [s for s in (stop or []) if s]
        gen = torch.Generator(device="cpu")
        if seed is not None:
            gen.manual_seed(int(seed))
        new: list[int] = []
        lps: list[float] = []
        tops: list[dict[int, float]] = []
        finish, text = "length", ""
        with self._lock, torch.no_grad(), self._use(adapter):
            out = self.model(input_ids=torch.tensor([ids], device=self.device), use_cache=True)
            prompt = self._scored(ids, out.logits[0], top) if echo else None
            logits, past = out.logits[0, -1].float(), out.past_key_values
            for _ in range(max_tokens):
                logprobs = torch.log_softmax(logits, -1)
                token = self._pick(logits, temperature, top_p, gen)
                new.append(token)
                lps.append(float(logprobs[token]))
                entry = {token: float(logprobs[token])}
                if top > 0:
                    values, indices = logprobs.topk(top)
                    entry = {**dict(zip(indices.tolist(), values.tolist(), strict=True)), **entry}
                tops.append(entry)
                if token in self.eos_ids:
                    finish = "stop"
                    break
                text = self.decode([t for t in new if t not in self.eos_ids])
                cut = min((text.find(s) for s in stop if s in text), default=-1)
                if cut >= 0:
                    text, finish = text[:cut], "stop"
                    break
                out = self.model(input_ids=torch.tensor([[token]], device=self.device), past_key_values=past,
                                 use_cache=True)
                logits, past = out.logits[0, -1].float(), out.past_key_values
        if finish == "stop" and new and new[-1] in self.eos_ids:
            text = self.decode(new[:-1])
        elif finish == "length":
            text = self.decode(new)
        return Generation(new, lps, tops, finish, text, prompt)

    @staticmethod
    def _pick(logits: Any, temperature: float, top_p: float, gen: Any) -> int:
        import torch

        if temperature <= 0:
            return int(logits.argmax())
        probs = torch.softmax(logits / temperature, -1).cpu()
        if top_p < 1.0:
            sorted_p, sorted_i = probs.sort(descending=True)
            keep = sorted_p.cumsum(-1) - sorted_p < top_p
            probs = torch.zeros_like(probs).scatter(0, sorted_i[keep], sorted_p[keep])
        return int(torch.multinomial(probs, 1, generator=gen))
