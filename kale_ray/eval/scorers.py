"""Two ways to ask a model for log-likelihoods and generations: in-process (transformers) or through
an OpenAI-compatible completions API (our Serve app, vLLM, ...), with concurrent requests.

A model spec is a checkpoint path, a registered name (smollm2-135m-instruct) or a served model
written `http://host:port/v1#model-name`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol


class Scorer(Protocol):
    def loglikelihood(self, pairs: list[tuple[str, str]]) -> list[float]:
        """Summed log-prob of each continuation given its context."""

    def generate(self, prompts: list[str], max_tokens: int, stop: list[str]) -> list[str]:
        """Greedy continuations."""

    def close(self) -> None: ...


class ScoringError(RuntimeError):
    """A served model answered with an error or without the log-probs scoring needs."""


def is_served(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


class LocalScorer:
    """transformers in this process; `spec` may be a checkpoint, a registered name or a LoRA adapter dir."""

    def __init__(self, spec: str, dtype: str = "float32", device: str = "auto", batch_size: int = 8,
                 cache_dir: Path | None = None) -> None:
        from kale_ray.engines.hf import HFEngine

        self.engine = HFEngine(spec, dtype=dtype, device=device, max_batch_seqs=batch_size, cache_dir=cache_dir)
        self.adapter = self.engine.default_adapter  # a bare LoRA adapter dir's own

    def loglikelihood(self, pairs: list[tuple[str, str]]) -> list[float]:
        return [ll for ll, _ in self.engine.loglikelihood(pairs, self.adapter)]

    def generate(self, prompts: list[str], max_tokens: int, stop: list[str]) -> list[str]:
        from kale_ray.engines.base import GenerationRequest

        requests = [GenerationRequest(self.engine.encode(p), max_tokens, stop=list(stop)) for p in prompts]
        return [g.text for g in self.engine.generate_batch(requests, self.adapter)]

    def close(self) -> None:
        del self.engine


class APIScorer:
    """Scores through `/v1/completions` with echo + logprobs: whole items (all options of a question)
    packed into requests of at most `prompts_per_request` prompts (fewer round trips, and the server
    runs each question's context once for its options), `concurrency` requests in flight,
    kale_ray.http_retry's policy: a busy server is waited out within `busy_wait_s`, a failed request
    (connection reset, 500 from a dying replica, timeout) retried `max_retries` times."""

    def __init__(self, spec: str, concurrency: int = 8, timeout_s: float = 300.0, max_retries: int = 6,
                 api_key: str | None = None, busy_wait_s: float = 600.0, prompts_per_request: int = 16) -> None:
        import requests

        base, _, model = spec.partition("#")
        self.base = base.rstrip("/")
        self.model = model or None
        self.timeout_s, self.max_retries, self.busy_wait_s = timeout_s, max_retries, busy_wait_s
        self.prompts_per_request = prompts_per_request
        self.pool = ThreadPoolExecutor(max_workers=concurrency)
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=concurrency, pool_maxsize=concurrency)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"
        if self.model is None:
            self.model = self._get("/models")["data"][0]["id"]

    def _get(self, path: str) -> dict[str, Any]:
        resp = self.session.get(self.base + path, timeout=self.timeout_s)
        if resp.status_code != 200:
            raise ScoringError(f"GET {self.base}{path}: {resp.status_code} {resp.text[:300]}")
        return resp.json()

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        from kale_ray.http_retry import post_json

        out = post_json(self.session, self.base + path, {"model": self.model, **body}, timeout_s=self.timeout_s,
                        max_retries=self.max_retries, busy_wait_s=self.busy_wait_s, backoff_s=0.5)
        if out.error is None and out.response.status_code == 200:
            return out.response.json()
        if out.error is None:
            raise ScoringError(f"POST {self.base}{path}: {out.response.status_code} {out.response.text[:300]}")
        raise ScoringError(f"POST {self.base}{path}: {out.error}")

    def _request_lls(self, group: list[tuple[str, str]]) -> list[float]:
        out = self.post("/completions", {"prompt": [c + x for c, x in group], "max_tokens": 0, "echo": True,
                                         "logprobs": 0, "temperature": 0})
        choices = sorted(out["choices"], key=lambda c: c["index"])
        if len(choices) != len(group):
            raise ScoringError(f"asked for {len(group)} echoes, got {len(choices)} choices")
        return [continuation_logprob(ch.get("logprobs"), len(ctx)) for ch, (ctx, _) in zip(choices, group, strict=True)]

    def loglikelihood(self, pairs: list[tuple[str, str]]) -> list[float]:
        results = self.pool.map(self._request_lls, pack_items(pairs, self.prompts_per_request))
        return [ll for lls in results for ll in lls]

    def generate(self, prompts: list[str], max_tokens: int, stop: list[str]) -> list[str]:
        def one(prompt: str) -> str:
            out = self.post("/completions", {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                                             "stop": stop or None})
            return out["choices"][0]["text"]

        return list(self.pool.map(one, prompts))

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.session.close()


def pack_items(pairs: list[tuple[str, str]], limit: int) -> list[list[tuple[str, str]]]:
    """Consecutive pairs in requests of at most `limit` pairs, an item (consecutive pairs with one
    context: a question's options) kept in one request, so the server shares its context; an item
    larger than `limit` (more options than a request carries) is cut in parts."""
    items: list[list[tuple[str, str]]] = []
    for pair in pairs:
        if items and items[-1][0][0] == pair[0] and len(items[-1]) < limit:
            items[-1].append(pair)
        else:
            items.append([pair])
    requests: list[list[tuple[str, str]]] = []
    for item in items:
        if requests and len(requests[-1]) + len(item) <= limit:
            requests[-1].extend(item)
        else:
            requests.append(list(item))
    return requests


def continuation_logprob(logprobs: dict[str, Any] | None, context_chars: int) -> float:
    """Sum the echoed log-probs of the tokens that hold any character past the context. A response
    without echoed log-probs is an error, never a silent zero (it would score at chance)."""
    if not logprobs or not logprobs.get("token_logprobs") or logprobs.get("text_offset") is None:
        raise ScoringError("the server returned no echoed prompt log-probs (echo + logprobs unsupported?)")
    offsets, lps, tokens = logprobs["text_offset"], logprobs["token_logprobs"], logprobs["tokens"]
    total, found = 0.0, False
    for i, (start, lp) in enumerate(zip(offsets, lps, strict=True)):
        end = offsets[i + 1] if i + 1 < len(offsets) else start + len(tokens[i])
        if end > context_chars:
            if lp is None:
                raise ScoringError("the continuation's first token has no log-prob (empty context?)")
            total += lp
            found = True
    if not found:
        raise ScoringError("no echoed token covers the continuation")
    return total


def open_scorer(spec: str, cfg: Any) -> Scorer:  # cfg: KaleConfig
    if is_served(spec):
        key = os.environ.get(cfg.eval.api_key_env) if cfg.eval.api_key_env else None
        return APIScorer(spec, cfg.eval.concurrency, cfg.eval.request_timeout_s, cfg.eval.max_retries, key,
                         cfg.eval.busy_wait_s, cfg.eval.prompts_per_request)
    if cfg.eval.threads is not None:
        # The CPU thread count changes the order of float reductions, so log-likelihoods (by ~1e-5 on
        # SmolLM2) and near-tied predictions differ between machines with different core counts.
        import torch

        torch.set_num_threads(cfg.eval.threads)
    return LocalScorer(spec, cfg.model.dtype, cfg.eval.device, cfg.eval.batch_size, cfg.model.cache_dir)
