"""The sections more than one stage reads: the Ray cluster, the model, the data."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class RayConfig(Section):
    address: str | None = Field(None, description="Ray cluster address; null starts (or joins) a local one.")
    num_cpus: int | None = Field(None, description="CPUs of a local cluster (null: all of the machine's).")
    object_store_memory: int | None = Field(
        1_500_000_000, description="Object store bytes of a local cluster; 1-2 GB is plenty on a laptop.")
    include_dashboard: bool = Field(
        True, description="Start Ray's dashboard with a local cluster: the state API that Ray Train and "
                          "`ray job submit` use lives there.")


class ModelConfig(Section):
    name_or_path: str = Field(
        "smollm2-135m-instruct",
        description="A registered name (smollm2-135m-instruct), a local checkpoint path or a Hugging Face id.")
    cache_dir: Path | None = Field(
        None, description="Where prepared checkpoints go (default: $KALE_CACHE or ~/.cache/kale-ray).")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Weights' dtype; bfloat16 on GPUs, float32 on CPUs.")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = Field(
        "sdpa", description="Attention kernel of transformers: sdpa (default), eager, or flash_attention_2 "
                            "(needs the flash-attn package and a GPU).")


class BenchmarkSplit(Section):
    """One benchmark's own split settings; a key not given keeps the data section's value."""

    test_fraction: float | None = Field(None, gt=0, lt=1, description="Share of this benchmark's rows held out.")
    limit_train: int | None = Field(None, ge=1, description="Training rows of this benchmark (null: all).")
    limit_test: int | None = Field(None, ge=1, description="Held-out rows of this benchmark (null: all).")


class DataConfig(Section):
    benchmark: str | list[str] = Field(
        "arc-easy",
        description="A registered benchmark name or a path to a benchmark file, or a list of them (a multi-task "
                    "mix: each is split on its own and the limits apply per benchmark).")
    source_split: Literal["test", "dev", "all"] = Field(
        "test", description="Which of the benchmark's files to draw the train/test split from.")
    test_fraction: float = Field(0.3, gt=0, lt=1, description="Share of rows held out for evaluation.")
    split_seed: int = Field(0, description="Seed of the deterministic, row-id-hashed train/test split.")
    limit_train: int | None = Field(
        None, ge=1, description="Use at most this many training rows (per benchmark): a seeded random sample, "
                                "stratified by MMLU subject / BBH task / source file, never the first N.")
    limit_test: int | None = Field(
        None, ge=1, description="Evaluate on at most this many held-out rows (per benchmark), sampled like limit_train.")
    sample_seed: int = Field(0, description="Seed of the stratified samples the limits draw (data.limit_*, eval.limit).")
    per_benchmark: dict[str, BenchmarkSplit] = Field(
        default_factory=dict,
        description="Per-benchmark settings that replace test_fraction / limit_train / limit_test for that "
                    "benchmark (only the keys given; null lifts a limit), e.g. {absr: {limit_test: null}}.")

    @property
    def benchmarks(self) -> list[str]:
        return [self.benchmark] if isinstance(self.benchmark, str) else list(self.benchmark)

    @model_validator(mode="after")
    def _known_benchmarks(self) -> DataConfig:
        unknown = sorted(set(self.per_benchmark) - {self._label(b) for b in self.benchmarks})
        if unknown:
            raise ValueError(f"data.per_benchmark names {unknown}, which data.benchmark does not list")
        return self

    @staticmethod
    def _label(name: str) -> str:
        return Path(name).stem if Path(name).suffix else name

    def split_of(self, name: str) -> tuple[float, int | None, int | None]:
        """(test_fraction, limit_train, limit_test) of one benchmark, its per_benchmark keys winning."""
        values = {"test_fraction": self.test_fraction, "limit_train": self.limit_train,
                  "limit_test": self.limit_test}
        own = self.per_benchmark.get(self._label(name))
        if own is not None:
            values.update({k: getattr(own, k) for k in own.model_fields_set})
        if values["test_fraction"] is None:
            values["test_fraction"] = self.test_fraction
        return values["test_fraction"], values["limit_train"], values["limit_test"]
    strict: bool = Field(False, description="Fail on the first malformed row instead of counting it.")
    chat_template: bool = Field(
        False, description="Train and score through the model's chat template (an instruct model: what "
                           "/v1/chat/completions sends); false: the plain cloze format (docs/method.md).")
