"""The transformers engine: one base checkpoint plus LoRA adapters, used by Serve replicas, in-process
evaluation, probing and rationale synthesis, so all of them score and generate with the same code.

Adapters are loaded once into one peft model and chosen per call; calls are serialised with a lock
because switching the active adapter is shared state. Generation is batched: prompts of any lengths
decode together on one key/value cache (left-padded, positions from the attention mask, as
transformers' `generate` does), each with its own sampling settings, stop strings and token budget; a
finished row leaves the batch. Scoring runs a shared prefix once (a question's context before its
options): the prefixes of many questions in one left-padded forward, then every option's tail on its
prefix's cache rows. On a CPU a forward costs its padded tokens, on any device each forward reads every
weight, so both fewer tokens and fewer, fuller forwards count.
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

CONT_CHUNK_TOKENS = 2048  # continuation tokens per forward when scoring on a shared context
MAX_PADDING = 0.2  # the most a forward's padded tokens may be pads
LOGIT_ELEMENTS = 2**27  # at most this many logits (512 MB in fp32) held by one scoring forward


@dataclass
class _Decoding:
    """One request's progress through batched decoding."""

    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list[dict[int, float]] = field(default_factory=list)
    finish: str = "length"
    text: str | None = None  # set when a stop string ended it
    done: bool = False


@dataclass
class _Group:
    """Sequences that share `prefix`: `tails[k]` (non-empty) follows it in the sequence `members[k]`."""

    prefix: list[int]
    tails: list[list[int]]
    members: list[int]


def _shared_prefixes(seqs: Sequence[Sequence[int]]) -> list[tuple[list[int], list[int]]]:
    """(prefix, member indices) covering every sequence of two or more tokens, each prefix shorter
    than its members. Sorted order puts sequences with a common prefix next to each other; one joins
    the group before it when that saves tokens: its m members then share `shared` tokens instead of
    m - 1 of them sharing the whole prefix (a question's options share all of it and join; another
    question shares only the format's first words, and joining would lengthen every member's tail)."""
    groups: list[tuple[list[int], list[int]]] = []
    for i in sorted((i for i, s in enumerate(seqs) if len(s) >= 2), key=lambda i: list(seqs[i])):
        head = list(seqs[i][:-1])
        if groups:
            prefix, members = groups[-1]
            shared = 0
            for a, b in zip(prefix, head, strict=False):
                if a != b:
                    break
                shared += 1
            if shared and len(members) * shared > (len(members) - 1) * len(prefix):
                del prefix[shared:]
                members.append(i)
                continue
        groups.append((head, [i]))
    return groups


def _cache_rows(cache: Any, index: Any) -> Any:
    """A cache of the rows `index` (repeats allowed) of `cache`, which stays as it was: the layers'
    select and later appends make new tensors, so shallow copies of the layers suffice."""
    import copy

    rows = copy.copy(cache)
    rows.layers = [copy.copy(layer) for layer in cache.layers]
    rows.batch_select_indices(index)
    return rows


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

    def _batches(self, lengths: Sequence[int], max_tokens: int | None = None) -> list[list[int]]:
        """Indices grouped longest first into batches of at most `max_batch_seqs` rows and
        `max_tokens` (default `max_batch_tokens`) padded tokens (a longer row goes alone), at most
        `MAX_PADDING` of them pads: on a CPU a forward costs its padded tokens, so rows of very
        different lengths go in different forwards."""
        budget = self.max_batch_tokens if max_tokens is None else max_tokens
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batches: list[list[int]] = []
        real = 0
        for i in order:
            if batches:
                rows, width = len(batches[-1]) + 1, lengths[batches[-1][0]]
                if rows <= self.max_batch_seqs and rows * width <= budget \
                        and real + lengths[i] >= (1 - MAX_PADDING) * rows * width:
                    batches[-1].append(i)
                    real += lengths[i]
                    continue
            batches.append([i])
            real = lengths[i]
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
        """Every token's log-prob given its prefix (echo scoring). Sequences that share a long token
        prefix (a question's options, sent together) run it once: the prefix's tokens are scored in
        one pass and only the rest of each sequence runs on its key/value cache, so a multiple-choice
        request costs about what in-process scoring of its context and options costs. Results equal
        whole-sequence scoring (tested)."""
        import torch

        results: list[Scored | None] = [None] * len(seqs)
        groups: list[_Group] = []
        for prefix, members in _shared_prefixes(seqs):
            groups.append(_Group(prefix, [seqs[i][len(prefix):] for i in members], members))
        for i, seq in enumerate(seqs):
            if len(seq) < 2:
                results[i] = self._scored(seq, None, top)  # nothing to score
        with self._lock, torch.no_grad(), self._use(adapter):
            for group, head, tails in self._run_groups(groups, echo=True, top=top):
                assert head is not None
                for i, tail in zip(group.members, tails, strict=True):
                    results[i] = head.then(tail)
        return [r for r in results if r is not None]

    def loglikelihood(self, pairs: list[tuple[str, str]], adapter: str | None = None) -> list[tuple[float, bool]]:
        """As `EngineBase.loglikelihood`, but the options of a question run their context once (its
        last position's logits only) and only the continuations on its key/value cache, many
        questions per forward: the same numbers (tested against whole-sequence scoring) for a fraction
        of the work, since multiple-choice contexts are long and options short."""
        import torch

        seqs, n_cont = self.pair_sequences(pairs)
        out: list[tuple[float, bool]] = [(0.0, True)] * len(seqs)
        by_context: dict[tuple[int, ...], list[int]] = {}
        for i, (seq, n) in enumerate(zip(seqs, n_cont, strict=True)):
            if n == 0 or len(seq) < 2:
                continue  # nothing to score
            # A continuation that fills the window has no context: its first token is not scored.
            cut = max(len(seq) - n, 1)
            by_context.setdefault(tuple(seq[:cut]), []).append(i)
        groups = [_Group(list(ctx), [seqs[i][len(ctx):] for i in members], members)
                  for ctx, members in by_context.items()]
        with self._lock, torch.no_grad(), self._use(adapter):
            for group, _, tails in self._run_groups(groups, echo=False, top=0):
                for i, tail in zip(group.members, tails, strict=True):
                    out[i] = (float(sum(x for x in tail.logprobs if x is not None)), all(tail.greedy))
        return out

    def _run_groups(self, groups: list[_Group], echo: bool, top: int) -> Iterator[tuple[_Group, Scored | None, list[Scored]]]:
        """(group, its prefix scored if `echo`, each tail scored) for every group, several groups a
        forward: the prefixes left-padded in one pass (so the last column holds every prefix's next-
        token logits), then the tails right-padded on their prefix's cache rows, in chunks whose
        [rows, width, vocab] logits stay under `LOGIT_ELEMENTS`."""
        logit_tokens = max(1, LOGIT_ELEMENTS // self.vocab_size)
        budget = min(self.max_batch_tokens, logit_tokens) if echo else self.max_batch_tokens
        order = self._batches([len(g.prefix) for g in groups], budget)
        for batch in order:
            chosen = [groups[i] for i in batch]
            heads, first, cache, mask = self._prefix_pass([g.prefix for g in chosen], echo, top)
            rows = [(b, j) for b, g in enumerate(chosen) for j in range(len(g.tails))]
            tails: dict[tuple[int, int], Scored] = {}
            for (b, j) in rows:  # the first tail token comes from the prefix's last logits
                tails[(b, j)] = self._predicted(chosen[b].tails[j][:1], first[b][None], top)
            longer = [r for r in rows if len(chosen[r[0]].tails[r[1]]) > 1]
            widths = [len(chosen[b].tails[j]) - 1 for b, j in longer]
            for part in self._batches(widths, min(CONT_CHUNK_TOKENS, logit_tokens)):
                chunk = [longer[k] for k in part]
                scored = self._tail_pass([chosen[b].tails[j] for b, j in chunk], [b for b, _ in chunk], cache, mask,
                                         top)
                for key, more in zip(chunk, scored, strict=True):
                    tails[key] = tails[key].then(more)
            for b, group in enumerate(chosen):
                yield group, heads[b] if heads else None, [tails[(b, j)] for j in range(len(group.tails))]

    def _prefix_pass(self, prefixes: list[list[int]], echo: bool, top: int) -> tuple[list[Scored], Any, Any, Any]:
        """One left-padded forward over `prefixes`: (their tokens scored if `echo`, each one's
        next-token logits, the key/value cache, the attention mask)."""
        import torch

        dev = self.device
        width = max(len(p) for p in prefixes)
        ids = torch.full((len(prefixes), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prefixes), width), dtype=torch.long)
        for row, prefix in enumerate(prefixes):
            ids[row, width - len(prefix):] = torch.tensor(prefix, dtype=torch.long)
            mask[row, width - len(prefix):] = 1
        mask = mask.to(dev)
        padded = not bool(mask.all())
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids.to(dev), attention_mask=mask if padded else None, position_ids=positions,
                         use_cache=True, logits_to_keep=0 if echo else 1)
        heads = [self._scored(p, out.logits[row, width - len(p):], top) for row, p in enumerate(prefixes)] \
            if echo else []
        return heads, out.logits[:, -1].float(), out.past_key_values, mask

    def _tail_pass(self, tails: list[list[int]], prefix_rows: list[int], cache: Any, mask: Any, top: int) -> list[Scored]:
        """Tokens 2.. of each tail (right-padded: pads follow every real token, so causal attention
        keeps them out) on a copy of its prefix's cache row."""
        import torch

        dev = self.device
        width = max(len(t) for t in tails) - 1
        index = torch.tensor(prefix_rows, device=dev)
        ids = torch.full((len(tails), width), self.pad_id, dtype=torch.long)
        tail_mask = torch.zeros((len(tails), width), dtype=torch.long)
        for row, tail in enumerate(tails):
            ids[row, : len(tail) - 1] = torch.tensor(tail[:-1], dtype=torch.long)
            tail_mask[row, : len(tail) - 1] = 1
        rows_mask = mask[index]
        full_mask = torch.cat([rows_mask, tail_mask.to(dev)], dim=1)
        positions = rows_mask.sum(-1, keepdim=True) + torch.arange(width, device=dev)[None, :]
        logits = self.model(input_ids=ids.to(dev), attention_mask=full_mask, position_ids=positions,
                            past_key_values=_cache_rows(cache, index)).logits.float()
        return [self._predicted(tail[1:], logits[row, : len(tail) - 1], top) for row, tail in enumerate(tails)]

    def _scored(self, seq: list[int], logits: Any, top: int) -> Scored:
        """`seq` scored from its own logits (row k predicts token k + 1; the first token has none)."""
        if len(seq) < 2:
            return Scored(list(seq), [None] * len(seq), [None] * len(seq), [True] * len(seq))
        rest = self._predicted(seq[1:], logits[: len(seq) - 1], top)
        return Scored(list(seq), [None, *rest.logprobs], [None, *rest.top], [True, *rest.greedy])

    @staticmethod
    def _predicted(targets: list[int], logits: Any, top: int) -> Scored:
        """`targets` scored where logits row k predicts targets[k]: each log-prob, the `top` most likely
        (always with the actual token) and whether it is the argmax."""
        import torch

        logits = logits.float()
        target = torch.tensor(targets, device=logits.device)
        lse = torch.logsumexp(logits, dim=-1)
        lp = (logits.gather(-1, target[:, None])[:, 0] - lse).tolist()
        greedy = (logits.argmax(-1) == target).tolist()
        tops: list[dict[int, float] | None] = []
        if top > 0:
            values, indices = logits.topk(top, dim=-1)
            values = values - lse[:, None]
            for pos, token in enumerate(targets):
                entry = dict(zip(indices[pos].tolist(), values[pos].tolist(), strict=True))
                entry[token] = lp[pos]
                tops.append(entry)
        else:
            tops.extend({token: lp[pos]} for pos, token in enumerate(targets))
        return Scored(list(targets), lp, tops, greedy)

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
            logprobs = torch.log_softmax(logits, -1)  # the model's own distribution, before any penalty
            chooser = _penalised(logits, [reqs[i] for i in live], [states[i].ids for i in live])
            greedy = chooser.argmax(-1).tolist()
            picks = [greedy[k] if reqs[i].temperature <= 0
                     else self._pick(chooser[k], reqs[i].temperature, reqs[i].top_p, generators[i])
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


def _penalised(logits: Any, reqs: list[GenerationRequest], generated: list[list[int]]) -> Any:
    """The logits the next token is chosen from: each row's repetition penalty and n-gram ban applied
    over the tokens it generated so far (GenerationRequest). Rows without either are left as they are,
    and so is the tensor when no row asks (no copy)."""
    import torch

    rows = [k for k, r in enumerate(reqs) if (r.repetition_penalty != 1.0 or r.no_repeat_ngram_size > 0) and generated[k]]
    if not rows:
        return logits
    out = logits.clone()
    for k in rows:
        r, ids = reqs[k], generated[k]
        if r.repetition_penalty != 1.0:
            seen = torch.tensor(sorted(set(ids)), device=out.device)
            values = out[k, seen]
            out[k, seen] = torch.where(values > 0, values / r.repetition_penalty, values * r.repetition_penalty)
        n = r.no_repeat_ngram_size
        if n > 0 and len(ids) >= n:
            prefix = ids[len(ids) - n + 1:] if n > 1 else []
            banned = {ids[j + n - 1] for j in range(len(ids) - n + 1) if ids[j:j + n - 1] == prefix}
            out[k, sorted(banned)] = float("-inf")
    return out
