"""Config of the Ray Serve inference application."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    host: str = Field("127.0.0.1", description="HTTP bind address; 127.0.0.1 unless you mean to expose it.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")
    backend: Literal["hf", "vllm"] = Field("hf", description="Inference engine behind the API.")
    replicas: int = Field(1, ge=1, description="Replicas per model (min when autoscaling).")
    max_replicas: int | None = Field(None, ge=1, description="Autoscaling upper bound (null: no autoscaling).")
    replica_cpus: float = Field(1.0, gt=0, description="CPUs per replica.")
    replica_gpus: float = Field(0.0, ge=0, description="GPUs per replica.")
    api_key_env: str | None = Field(None, description="If set, the bearer API key is read from this variable.")
    max_request_bytes: int = Field(1_000_000, ge=1024, description="Larger request bodies get 413.")
    max_queued: int = Field(64, ge=1, description="Requests waiting per replica before 503 + Retry-After.")
