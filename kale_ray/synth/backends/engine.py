"""A rationale writer over an engine of `kale_ray.engines` (transformers): the chat template's text, a
context check per row, then one batched generation. (The vllm writer is Ray's vLLM processor:
kale_ray.synth.ray_llm.)"""

from __future__ import annotations

from typing import Any

from kale_ray.engines.base import EngineBase, GenerationRequest
from kale_ray.engines.base import Generation as EngineGeneration
from kale_ray.synth.backends.base import Backend, Generation, Request, context_error, sampling


class EngineBackend(Backend):
    """Every request samples with the writer's seed (its own generator per row, as vLLM does), so a
    row's rationale does not depend on the rows batched with it."""

    def __init__(self, cfg: Any, model_path: str, seed: int, engine: EngineBase) -> None:
        self.cfg, self.model_path, self.seed, self.engine = cfg, model_path, seed, engine
        self.max_len = cfg.max_model_len or engine.context_length

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model_path, **sampling(self.cfg, self.seed)}

    def render(self, messages: list[dict[str, str]]) -> str:
        return self.engine.render_chat(messages)

    def generate(self, requests: list[Request]) -> list[Generation]:
        prompts = [self.render(r.messages) for r in requests]
        results: list[Generation] = []
        todo: list[tuple[int, list[int]]] = []
        for i, prompt in enumerate(prompts):
            ids = self.engine.encode(prompt)
            err = context_error(len(ids), self.cfg.max_new_tokens, self.max_len)
            results.append(err or Generation())
            if err is None:
                todo.append((i, ids))
        if todo:
            gens = self.engine.generate_batch([
                GenerationRequest(ids, self.cfg.max_new_tokens, self.cfg.temperature, self.cfg.top_p, seed=self.seed,
                                  repetition_penalty=self.cfg.repetition_penalty,
                                  no_repeat_ngram_size=self.cfg.no_repeat_ngram_size)
                for _, ids in todo])
            for (i, _), gen in zip(todo, gens, strict=True):
                results[i] = Generation(text=self.text(gen), tokens=len(gen.ids), finish_reason=gen.finish_reason)
        for gen, prompt in zip(results, prompts, strict=True):
            gen.prompt = prompt
        return results

    def text(self, gen: EngineGeneration) -> str:
        """The rationale's text: the engine's (vLLM's detokenizer already leaves special tokens out)."""
        return gen.text

    def close(self) -> None:
        del self.engine
