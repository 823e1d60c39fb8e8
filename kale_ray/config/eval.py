"""Config of benchmark evaluation (docs/method.md, Evaluation)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    benchmarks: list[str] = Field(default_factory=lambda: ["arc-easy"], description="Benchmarks to score.")
    split: str = Field("test", description="Which file of a registered benchmark to score (test|dev|all).")
    test_split: Path | None = Field(
        None, description="A data stage dir (or parquet file): score its held-out test.parquet instead.")
    limit: int | None = Field(None, ge=1, description="Score at most this many items per benchmark (a seeded stratified sample, data.sample_seed).")
    batch_size: int = Field(
        64, ge=1, description="Most option sequences per forward pass in-process (also capped at 8192 tokens).")
    engine: Literal["serve", "local"] = Field(
        "serve", description="Models given as paths or names: serve (deployed on Ray Serve for the stage, the "
                             "base once per replica with every LoRA adapter on it, replicas and their CPUs/GPUs "
                             "from serve.*, scored through the OpenAI API) or local (in this process, no Ray).")
    threads: int | None = Field(
        None, ge=1, description="torch CPU threads of in-process scoring (null: torch's default, the machine's cores). "
                                "The thread count moves log-likelihoods by float rounding: fix it to score alike on "
                                "machines with different core counts.")
    concurrency: int = Field(8, ge=1, description="Requests in flight when scoring through the Serve API.")
    prompts_per_request: int = Field(
        16, ge=1, description="Prompts one scoring request to a served model carries: whole items (a question's "
                              "options), as many as fit (one item alone may carry more). At most the server's "
                              "serve.max_prompts.")
    request_timeout_s: float = Field(300.0, gt=0, description="Timeout of one request to a served model.")
    max_retries: int = Field(
        6, ge=0, description="Retries of a failed request to a served model (connection error, timeout, 5xx).")
    busy_wait_s: float = Field(
        600.0, gt=0, description="How long a request waits out a busy served model (429/503, Retry-After honoured).")
    api_key_env: str | None = Field(
        None, description="Environment variable holding the bearer key of a served model (null: none).")
    device: str = Field("auto", description="Device of in-process scoring: auto (cuda if present), cpu, cuda.")
    generative: list[str] = Field(
        default_factory=lambda: ["bbh"],
        description="Benchmarks (name prefixes) scored by generation + exact match instead of log-likelihood.")
    max_new_tokens: int = Field(32, ge=1, description="Generation cap of generative (BBH) items.")
    vanilla: bool = Field(True, description="The pipeline also scores the untrained base model (Vanilla).")
    known_incorrect: bool = Field(
        True, description="Run the known&incorrect analysis: ask each item's key fact (the last edge of its "
                          "shortest KG path) as a direct question, known when acc_norm picks the answer entity.")
    probes: Path | None = Field(
        None, description="Paths artifact (the paths-test stage's, or `kale-ray paths`) whose paths give each "
                          "item's key fact (known&incorrect).")
    kg: Path | None = Field(
        None, description="KG artifact the probes' paths were searched in (null: the one the paths artifact's "
                          "manifest names).")
    known_distractors: int = Field(
        3, ge=1, description="Distractor entities of a key-fact question: other entities in the answer's role "
                             "of the same relation, drawn seeded by item id.")
    known_from: Literal["fact", "probe"] = Field(
        "fact", description="known&incorrect's 'known': the key-fact question, or the trained probe (kale-ray probe).")
