"""Config of the Ray Serve inference application."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ServedModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str = Field(..., description="The `model` value that selects the base checkpoint.")
    path: str = Field(..., description="Registered name, local checkpoint or Hugging Face id of the base.")
    adapters: dict[str, str] = Field(
        default_factory=dict, description="LoRA adapters on this base: `model` value -> adapter directory.")


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    host: str = Field("127.0.0.1", description="HTTP bind address; 127.0.0.1 unless you mean to expose it.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")
    app_name: str = Field("kale", description="Name of the Serve application.")
    route_prefix: str = Field("/", description="Route prefix of the OpenAI-compatible API.")
    backend: Literal["hf", "vllm"] = Field(
        "hf", description="Inference engine behind the API: kale-ray's app on transformers, or Ray's ray.serve.llm "
                          "OpenAI app on vLLM (adapters as <base>:<name>, loaded from object storage).")
    models: list[ServedModel] = Field(
        default_factory=list,
        description="Served bases with their adapters (empty: model.name_or_path under its own name).")
    replicas: int = Field(1, ge=1, description="Replicas per model (min when autoscaling).")
    max_replicas: int | None = Field(None, ge=1, description="Autoscaling upper bound (null: no autoscaling).")
    target_ongoing_requests: float = Field(
        2.0, gt=0, description="Autoscaling target of requests in flight per replica.")
    replica_cpus: float = Field(1.0, gt=0, description="CPUs per replica.")
    replica_gpus: float = Field(0.0, ge=0, description="GPUs per replica.")
    ingress_cpus: float = Field(0.1, gt=0, description="CPUs of the HTTP ingress replica.")
    device: str = Field("auto", description="Device of the hf engine: auto (cuda if present), cpu, cuda.")
    api_key_env: str | None = Field(
        None, description="Bearer API key: the variable that holds it, read by the replica from its own "
        "environment (set it on every Ray node; it is never put into Ray's runtime_env).")
    api_key_file: str | None = Field(
        None, description="Bearer API key: a file holding it (a mounted secret on every node), read by the "
        "replica; takes precedence over api_key_env.")
    allow_unauthenticated: bool = Field(
        False, description="Allow a non-loopback serve.host without an API key (refused otherwise).")
    max_request_bytes: int = Field(1_000_000, ge=1024, description="Larger request bodies get 413.")
    max_queued: int = Field(64, ge=1, description="Requests waiting per replica before 503 + Retry-After.")
    health_check_period_s: float = Field(
        10.0, gt=0, description="How often Serve checks each replica (its engine included: a replica whose "
                                "engine failed reports unhealthy and is replaced).")
    health_check_timeout_s: float = Field(30.0, gt=0, description="A health check slower than this fails.")
    graceful_shutdown_timeout_s: float = Field(
        20.0, ge=0, description="A replica being stopped (scale-down, update) finishes its requests for this long; "
                                "the rest get a retryable 503.")
    retry_after_s: int = Field(1, ge=1, description="Retry-After seconds sent with a 503 (queue full).")
    max_prompts: int = Field(64, ge=1, description="Prompts one completions request may carry.")
    default_max_tokens: int = Field(16, ge=0, description="max_tokens of a request that gives none.")
    max_request_tokens: int = Field(
        65_536, ge=1, description="Budget of one request: the sum over its prompts of prompt tokens plus "
        "max_tokens; past it, 400.")
    request_timeout_s: float = Field(
        120.0, gt=0, description="Wall time one request may compute on a replica (hf engine: checked before "
        "every forward pass); past it, 408.")
    body_timeout_s: float = Field(30.0, gt=0, description="Time a client has to send its whole body; else 408.")
    max_response_bytes: int = Field(
        16_000_000, ge=1024, description="Larger responses are refused with 400 (ask for fewer tokens/logprobs).")
    vllm_engine_kwargs: dict[str, object] = Field(
        default_factory=dict, description="Extra vLLM engine arguments (vllm backend: the LLMConfig's engine_kwargs), e.g. "
                                          "max_model_len, tensor_parallel_size, enforce_eager.")
