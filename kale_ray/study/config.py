"""Config of the study: which pipeline variants to run and where the results page goes."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class StudyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    variants: dict[str, list[str]] = Field(
        default_factory=lambda: {"main": []},
        description="Pipeline runs of the study: name -> dotted overrides of this config; each runs as "
                    "<run_name>-<name> (e.g. hf: [synth.backend=hf, eval.vanilla=false]).")
    extra_results: dict[str, Path] = Field(
        default_factory=dict,
        description="Other evaluation results directories (kale-ray eval --out) to show on the page, by title.")
    results: Path = Field(Path("docs/results.md"), description="The results page the study writes.")
    discussion: Path = Field(
        Path("docs/results_discussion.md"),
        description="Hand-written discussion appended to the results page (kept out of the generated part).")
    results_json: Path = Field(
        Path("docs/results.json"),
        description="Every number of the results page, with the artifact file it came from (re-renders the page).")
