"""Config of knowledge probing (docs/method.md, the KA2L section)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class ProbeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    samples: int = Field(10, ge=2, description="Answers sampled per question for the semantic-entropy label.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of those answers (> 0).")
    threshold: float = Field(
        0.5, ge=0, description="Semantic entropy (nats) at or below which a question is labelled known.")
    max_new_tokens: int = Field(16, ge=1, description="Length cap of a sampled answer to a generative question.")
    layers: list[int] = Field(
        default_factory=lambda: [0, 5, 10, 15, 20, 25, 30],
        description="hidden_states indices swept (0: embeddings, N: last layer); one forward gives all.")
    batch_size: int = Field(16, ge=1, description="Questions per Ray Data batch and per forward pass.")
    workers: int = Field(1, ge=1, description="Hidden-state actors (each loads the model once).")
    worker_cpus: float = Field(
        0.5, gt=0, description="CPUs per hidden-state actor and of the labelling task (fractional: leave Ray Data a CPU).")
    worker_gpus: float = Field(0.0, ge=0, description="GPUs per hidden-state actor and of the labelling task.")
    max_length: int | None = Field(
        None, ge=8, description="Longest prompt in tokens (default: the model's context); longer rows are counted errors.")
    hidden: int = Field(64, ge=1, description="Hidden units of the MLP probe.")
    epochs: int = Field(300, ge=1, description="Full-batch AdamW steps of the probe.")
    lr: float = Field(1e-3, gt=0, description="Learning rate of the probe.")
    weight_decay: float = Field(1e-2, ge=0, description="AdamW weight decay of the probe.")
    seed: int | None = Field(None, description="Seed of sampling and probe training (default: the run's seed).")
    select_margin: float = Field(
        0.1, ge=0, lt=0.5,
        description="synth.select=probe skips a row only when P(known) >= 0.5 + this margin (else unknown or uncertain).")
    out: Path | None = Field(None, description="Results directory (default: <workdir>/<run>/results/probe).")
