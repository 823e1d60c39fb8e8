"""The transformers engine: one base checkpoint plus LoRA adapters, used by Serve replicas, in-process
evaluation, probing and rationale synthesis, so all of them score and generate with the same code.

Adapters are loaded once into one peft model and chosen per call; calls are serialised with a lock
because switching the active adapter is shared state. Generation is batched: prompts of any lengths
decode together on one key/value cache (left-padded, positions from the attention mask, as
transformers' `generate` does), each with its own sampling settings, stop strings and token budget; a
finished row leaves the batch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kale_ray.engines.base import EngineBase, Generation, GenerationRequest, Scored
from kale_ray.engines.loading import (
    Checkpoint,
    load_causal_lm,
    load_tokenizer,
    pick_device,
    resolve_checkpoint,
)

CONT_CHUNK_TOKENS = 1024  # continuation tokens per forward when scoring on a shared context


@dataclass
class _Decoding:
    """One request's progress through batched decoding."""

    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list[dict[int, float]] = field(default_factory=list)
    finish: str = "length"
    text: str | None = None  # set when a stop string ended it
    done: bool = False


class HFEngine(EngineBase):
    """transformers in this process, on CPU or GPU, with shared-context scoring and batched decoding."""

    def __init__(self, path: str | Path | Checkpoint, adapters: dict[str, str] | None = None,
                 dtype: str = "float32", device: str = "auto", max_batch_tokens: int = 8192,
                 max_batch_seqs: int = 64, cache_dir: Path | None = None) -> None:
        """`path`: anything `load_causal_lm` loads (a bare adapter directory brings its adapter)."""
        ckpt = resolve_checkpoint(path, adapters, cache_dir)
        self.path = ckpt.base
        self.device = pick_device(device)
        self.tokenizer = load_tokenizer(ckpt)
        self.model = load_causal_lm(ckpt, dtype=dtype, device=self.device)
        self.adapters: list[str] = list(ckpt.adapters)
        self.default_adapter = ckpt.default_adapter
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

    def _batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Indices grouped longest first into batches of at most `max_batch_seqs` rows and
        `max_batch_tokens` padded tokens (a longer row goes alone)."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batches: list[list[int]] = []
        for i in order:
            if batches and len(batches[-1]) < self.max_batch_seqs \
                    and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= self.max_batch_tokens:
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches

    # -- adapters ----------------------------------------------------------------------------------
    @contextmanager
    def _use(self, adapter: str | None) -> Iterator[None]:
        """Run with `adapter` active; None: the model itself (its default adapter, else the base)."""
        adapter = adapter if adapter is not None else self.default_adapter
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
        with self._lock, torch.no_grad(), self._use(adapter):
            for batch in self._batches([len(s) for s in seqs]):
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
    def generate_batch(self, requests: Sequence[GenerationRequest], adapter: str | None = None) -> list[Generation]:
        """Greedy or sampled decoding of every request, batched (see the module doc), keeping each new
        token's log-prob (raw model distribution) and, with `echo`, the prompt tokens' log-probs from
        the same first forward. A request's result does not depend on the batch it ran in (up to
        float rounding of the padded shapes): its sampling uses its own seeded generator."""
        import torch

        for request in requests:
            if not request.ids:
                raise ValueError("a prompt needs at least one token")
            self.check_length(len(request.ids), request.max_tokens)
        results: list[Generation | None] = [None] * len(requests)
        with self._lock, torch.no_grad(), self._use(adapter):
            for batch in self._batches([len(r.ids) + max(r.max_tokens, 0) for r in requests]):
                for i, gen in zip(batch, self._decode([requests[i] for i in batch]), strict=True):
                    results[i] = gen
        return [r for r in results if r is not None]

    def _decode(self, reqs: list[GenerationRequest]) -> list[Generation]:
        """One batch: a left-padded forward over the prompts, then one token per live row per step on
        the shared cache. The mask is passed only while some row is padded (as `generate` does)."""
        import torch

        dev = self.device
        width = max(len(r.ids) for r in reqs)
        ids = torch.full((len(reqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(reqs), width), dtype=torch.long)
        for row, r in enumerate(reqs):
            ids[row, width - len(r.ids):] = torch.tensor(r.ids, dtype=torch.long)
            mask[row, width - len(r.ids):] = 1
        mask = mask.to(dev)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        echo = any(r.echo for r in reqs)
        out = self.model(input_ids=ids.to(dev), attention_mask=None if bool(mask.all()) else mask,
                         position_ids=positions, use_cache=True, logits_to_keep=0 if echo else 1)
        prompts = [self._scored(r.ids, out.logits[row, width - len(r.ids):], r.top) if r.echo else None
                   for row, r in enumerate(reqs)]
        logits, past = out.logits[:, -1].float(), out.past_key_values
        del out
        position = positions[:, -1]
        generators = [self._generator(r.seed) if r.temperature > 0 else None for r in reqs]
        states = [_Decoding(done=r.max_tokens <= 0) for r in reqs]
        live = list(range(len(reqs)))
        while True:
            keep = [k for k, i in enumerate(live) if not states[i].done]
            if not keep:
                break
            if len(keep) < len(live):  # finished rows leave the batch and its cache
                index = torch.tensor(keep, device=dev)
                past.batch_select_indices(index)
                logits, mask, position = logits[index], mask[index], position[index]
                live = [live[k] for k in keep]
            if states[live[0]].ids:  # every live row has its last token: one step further
                tokens = torch.tensor([states[i].ids[-1] for i in live], device=dev)[:, None]
                mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
                position = position + 1
                step = self.model(input_ids=tokens, attention_mask=None if bool(mask.all()) else mask,
                                  position_ids=position[:, None], past_key_values=past, use_cache=True)
                logits = step.logits[:, -1].float()
            logprobs = torch.log_softmax(logits, -1)
            greedy = logits.argmax(-1).tolist()
            picks = [greedy[k] if reqs[i].temperature <= 0
                     else self._pick(logits[k], reqs[i].temperature, reqs[i].top_p, generators[i])
                     for k, i in enumerate(live)]
            chosen = logprobs[torch.arange(len(live), device=dev), torch.tensor(picks, device=dev)].tolist()
            for k, i in enumerate(live):
                entry = {picks[k]: chosen[k]}
                if reqs[i].top > 0:
                    values, indices = logprobs[k].topk(reqs[i].top)
                    entry = {**dict(zip(indices.tolist(), values.tolist(), strict=True)), **entry}
                self._advance(reqs[i], states[i], picks[k], entry)
        return [self._finished(r, s, p) for r, s, p in zip(reqs, states, prompts, strict=True)]

    def _advance(self, r: GenerationRequest, state: _Decoding, token: int, top: dict[int, float]) -> None:
        """Append `token` (`top`: its log-prob and the top ones) to a row and decide whether the row is
        done: EOS, a stop string, or its budget."""
        state.ids.append(token)
        state.logprobs.append(top[token])
        state.top.append(top)
        if token in self.eos_ids:
            state.finish, state.done = "stop", True
            return
        if r.stop:
            text = self.decode(state.ids)
            cut = min((text.find(s) for s in r.stop if s and s in text), default=-1)
            if cut >= 0:
                state.text, state.finish, state.done = text[:cut], "stop", True
                return
        state.done = len(state.ids) >= r.max_tokens

    def _finished(self, r: GenerationRequest, state: _Decoding, prompt: Scored | None) -> Generation:
        text = state.text
        if text is None:
            ended_by_eos = state.finish == "stop" and bool(state.ids) and state.ids[-1] in self.eos_ids
            text = self.decode(state.ids[:-1] if ended_by_eos else state.ids)
        return Generation(state.ids, state.logprobs, state.top, state.finish, text, prompt)

    @staticmethod
    def _generator(seed: int | None) -> Any:
        """A CPU generator for one request: seeded, or from fresh entropy when no seed is given."""
        import torch

        gen = torch.Generator(device="cpu")
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(int(seed))
        return gen

    @staticmethod
    def _pick(logits: Any, temperature: float, top_p: float, gen: Any) -> int:
        import torch

        probs = torch.softmax(logits / temperature, -1).cpu()
        if top_p < 1.0:
            sorted_p, sorted_i = probs.sort(descending=True)
            keep = sorted_p.cumsum(-1) - sorted_p < top_p
            probs = torch.zeros_like(probs).scatter(0, sorted_i[keep], sorted_p[keep])
        return int(torch.multinomial(probs, 1, generator=gen))
