"""Config of the study: which pipeline variants to run, which side runs go with them, and where the
results page goes."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class PathsRun(BaseModel):
    """The paths stage on a benchmark's own rows over another KG, for path statistics only (e.g. MetaQA,
    whose questions say how many hops their answers are)."""

    model_config = ConfigDict(extra="forbid")

    benchmark: str = Field(description="Registered benchmark name or file (its rows are searched, not split).")
    kg_source: str = Field(description="KG source of the search (kg.source).")
    kg_input: Path | None = Field(None, description="KG input (default: the source's default under data_root).")
    limit: int | None = Field(None, ge=1, description="A seeded random sample of N rows (data.sample_seed), never the first N.")
    max_hops: int | None = Field(None, ge=1, description="Hop limit (default: paths.max_hops).")


class EvalRun(BaseModel):
    """An evaluation outside the training mix (e.g. BBH, which the model answers by generation)."""

    model_config = ConfigDict(extra="forbid")

    benchmarks: list[str] = Field(description="Benchmarks to score (their registered split, eval.split).")
    limit: int | None = Field(None, ge=1, description="Score at most this many items per benchmark.")
    models: dict[str, str] = Field(
        default_factory=dict, description="Label -> model to score (default: Vanilla = model.name_or_path).")


class StudyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    variants: dict[str, list[str]] = Field(
        default_factory=lambda: {"main": []},
        description="Pipeline runs of the study: name -> dotted overrides of this config; each runs as "
                    "<run_name>-<name> (e.g. hf: [synth.backend=hf, eval.vanilla=false]).")
    path_runs: dict[str, PathsRun] = Field(
        default_factory=dict,
        description="Paths-stage runs for path statistics: title -> {benchmark, kg_source, kg_input, limit, max_hops} "
                    "(in <workdir>/<run_name>-extra/paths/).")
    eval_runs: dict[str, EvalRun] = Field(
        default_factory=dict,
        description="Evaluations outside the training mix: title -> {benchmarks, limit, models} "
                    "(in <workdir>/<run_name>-extra/eval/).")
    extra_results: dict[str, Path] = Field(
        default_factory=dict,
        description="Other evaluation results directories (kale-ray eval --out) to show on the page, by title.")
    results: Path = Field(Path("docs/results.md"), description="The results page the study writes.")
    discussion: Path = Field(
        Path("docs/results_discussion.md"),
        description="Hand-written discussion appended to the results page (kept out of the generated part).")
    committed: Path | None = Field(
        None, description="The study's committed results: per-item predictions and the collected numbers per "
                          "variant, merged run by run, enough to rebuild the page without the artifacts "
                          "(null: a `study/` folder beside study.results).")
    precheck: Path = Field(
        Path("docs/precheck.json"),
        description="The pre-check's result (`kale-ray study precheck`): per KA arm, the plain view's CE on the gold "
                    "answer before and after a short training run; the results page renders it.")
    results_json: Path = Field(
        Path("docs/results.json"),
        description="Every number of the results page, with the artifact file it came from (re-renders the page).")
