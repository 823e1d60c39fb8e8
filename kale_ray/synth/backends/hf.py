"""transformers batched generation, on CPU or GPU: the reference writer and the CPU fallback of vLLM."""

from __future__ import annotations

from typing import Any

from kale_ray.synth.backends.base import Backend, Generation, Request, context_error, sampling


class HFBackend(Backend):
    name = "hf"

    def __init__(self, cfg: Any, model_path: str, seed: int, dtype: str = "float32") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg, self.model_path, self.seed = cfg, model_path, seed
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype)).to(device)
        self.model.eval()
        self.device = device
        self.max_len = cfg.max_model_len or int(getattr(self.model.config, "max_position_embeddings", 2048))
        self.eos_ids = self._eos_ids()

    def _eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        ids = ids if isinstance(ids, list) else [ids]
        return {i for i in [*ids, self.tokenizer.eos_token_id] if i is not None}

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model_path, **sampling(self.cfg, self.seed)}

    def render(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, requests: list[Request]) -> list[Generation]:
        prompts = [self.render(r.messages) for r in requests]
        ids = self.tokenizer(prompts, add_special_tokens=False)["input_ids"]
        results: list[Generation | None] = []
        todo: list[int] = []
        for i, tokens in enumerate(ids):
            err = context_error(len(tokens), self.cfg.max_new_tokens, self.max_len)
            results.append(err)
            if err is None:
                todo.append(i)
        if todo:
            for i, gen in zip(todo, self._generate([prompts[i] for i in todo]), strict=True):
                results[i] = gen
        final = [r if r is not None else Generation(error="no result", error_kind="generation") for r in results]
        for gen, prompt in zip(final, prompts, strict=True):
            gen.prompt = prompt
        return final

    def _generate(self, prompts: list[str]) -> list[Generation]:
        torch = self.torch
        enc = self.tokenizer(prompts, add_special_tokens=False, return_tensors="pt", padding=True).to(self.device)
        sample = self.cfg.temperature > 0
        kwargs: dict[str, Any] = {"max_new_tokens": self.cfg.max_new_tokens, "do_sample": sample,
                                  "pad_token_id": self.tokenizer.pad_token_id}
        if sample:
            kwargs.update(temperature=self.cfg.temperature, top_p=self.cfg.top_p)
            torch.manual_seed(self.seed)
        with torch.no_grad():
            out = self.model.generate(**enc, **kwargs)
        new = out[:, enc["input_ids"].shape[1]:].tolist()
        gens = []
        for seq in new:
            stop = next((j for j, t in enumerate(seq) if t in self.eos_ids), None)
            kept = seq if stop is None else seq[:stop]
            gens.append(Generation(text=self.tokenizer.decode(kept, skip_special_tokens=True),
                                   tokens=len(kept) + (0 if stop is None else 1),
                                   finish_reason="length" if stop is None else "stop"))
        return gens
