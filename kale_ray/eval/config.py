"""Config of benchmark evaluation (METHOD.md, Evaluation)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    benchmarks: list[str] = Field(default_factory=lambda: ["arc-easy"], description="Benchmarks to score.")
    limit: int | None = Field(None, ge=1, description="Score at most this many items per benchmark.")
    batch_size: int = Field(8, ge=1, description="Option sequences scored per forward pass (in-process).")
    concurrency: int = Field(8, ge=1, description="Requests in flight when scoring through the Serve API.")
    known_incorrect: bool = Field(True, description="Run the known&incorrect probe analysis.")
