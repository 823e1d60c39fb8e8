"""The end-to-end pipeline: model -> data -> KG -> paths -> rationales -> train each method -> eval.

With `synth.select: probe` (or `eval.known_from: probe`) the knowledge probe runs after the data stage,
and paths + rationales cover only the training rows the probe marks unknown or uncertain.

Every stage skips itself when its artifact is complete for the same config (content hash), so a
pipeline re-run (or a re-submitted job whose driver died) resumes at the first incomplete stage.
Wall time per stage goes to `<run>/pipeline.json`.

The study runs one pipeline per variant, then its side runs and its report (`run_study`): it lives
here, above the stages and the study's own modules, so none of them imports the pipeline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kale_ray import storage
from kale_ray.artifacts import atomic_write_json
from kale_ray.config import ConfigError
from kale_ray.methods import METHODS, VANILLA, RunId, trained_runs
from kale_ray.progress import format_seconds


class Pipeline:
    """Runs stages in order, timing each and recording the result after each one."""

    def __init__(self, cfg) -> None:  # noqa: ANN001 (KaleConfig)
        self.cfg = cfg
        self.run_dir = cfg.workdir_path / cfg.run_name
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Seconds add up over re-runs: a resumed pipeline keeps what earlier attempts spent on the
        # stages it now skips, so pipeline.json stays the stage's real cost.
        earlier = self.run_dir / "pipeline.json"
        storage.fetch(earlier)
        stages = json.loads(earlier.read_text()).get("stages", {}) if earlier.is_file() else {}
        self.record: dict[str, Any] = {"run": cfg.run_name, "stages": stages}
        self.start = time.monotonic()

    def stage(self, name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.monotonic()
        print(f"pipeline: stage {name} ...", flush=True)
        result = fn()
        seconds = time.monotonic() - t0
        before = self.record["stages"].get(name, {})
        self.record["stages"][name] = {"seconds": round(before.get("seconds", 0.0) + seconds, 2),
                                       "attempts": before.get("attempts", 0) + 1, "result": str(result)}
        atomic_write_json(self.run_dir / "pipeline.json", self.record)
        print(f"pipeline: stage {name} done in {format_seconds(seconds)} -> {result}", flush=True)
        return result

    def finish(self) -> dict[str, Any]:
        self.record["seconds"] = round(time.monotonic() - self.start, 2)
        atomic_write_json(self.run_dir / "pipeline.json", self.record)
        print(f"pipeline: finished in {format_seconds(self.record['seconds'])}; artifacts in {self.run_dir}",
              flush=True)
        return self.record


def run_pipeline(cfg) -> dict[str, Any]:  # noqa: ANN001 (KaleConfig)
    from kale_ray.data.stage import read_split, run_data_stage
    from kale_ray.engines.registry import resolve_model_in_task
    from kale_ray.eval.run import run_eval
    from kale_ray.kg.extract import run_paths_stage
    from kale_ray.kg.stage import run_kg_stage
    from kale_ray.probe.stage import run_probe_stage
    from kale_ray.probe.uses import select_rows
    from kale_ray.ray_utils import init_ray
    from kale_ray.synth.stage import run_synth_stage
    from kale_ray.train.rows import check_same_rows_and_steps, write_shared_rows
    from kale_ray.train.stage import run_train_stage

    init_ray(cfg.ray)
    p = Pipeline(cfg)
    model = p.stage("model", lambda: resolve_model_in_task(cfg.model.name_or_path, cfg.model.cache_dir, cfg.models_dir))
    data_dir = p.stage("data", lambda: run_data_stage(cfg))
    train_rows, test_rows = read_split(data_dir, "train"), read_split(data_dir, "test")
    sources: dict[str, Path] = {"data": data_dir}
    needs = {METHODS[m].source for m in cfg.train.methods}
    fact_check = cfg.eval.known_incorrect and cfg.eval.known_from == "fact"
    if cfg.synth.select == "probe" or (cfg.eval.known_incorrect and cfg.eval.known_from == "probe"):
        p.stage("probe", lambda: run_probe_stage(cfg))
    if needs & {"synth", "synth-noki"} or fact_check:
        kg_dir = p.stage("kg", lambda: run_kg_stage(cfg))
    if needs & {"synth", "synth-noki"}:
        synth_rows, select = select_rows(cfg, train_rows)
        paths_dir = p.stage("paths", lambda: run_paths_stage(cfg, synth_rows, kg_dir, cfg.stage_dir("paths")))
        for name, ki in (("synth", True), ("synth-noki", False)):
            if name in needs:
                stage_cfg = cfg.model_copy(update={"synth": cfg.synth.model_copy(update={"ki": ki})})
                sources[name] = p.stage(name, lambda c=stage_cfg, n=name: run_synth_stage(
                    c, paths_dir, cfg.stage_dir(n), select))
    row_ids = None
    if cfg.train.rows == "shared":  # one explicit row set for every arm (kale_ray/train/rows.py)
        rationales = {n: sources[n] for n in ("synth", "synth-noki") if n in needs}
        rows_file = p.stage("rows", lambda: write_shared_rows(train_rows, rationales, cfg.stage_dir("rows")))
        row_ids = json.loads(Path(rows_file).read_text())["ids"]
    models = {RunId(VANILLA).label: model} if cfg.eval.vanilla else {}
    run_dirs: dict[str, Path] = {}
    for run in trained_runs(cfg.train.methods, cfg.train.seeds):
        method = METHODS[run.method]
        # The run's seed, and its method's own train.ka values (an ablation of the KA loss is an arm here).
        run_cfg = cfg.model_copy(update={"seed": cfg.seed if run.seed is None else run.seed,
                                         "train": cfg.train.for_method(run.method)})
        run_dir = p.stage(f"train-{run.dir_name}", lambda c=run_cfg, m=method, n=run.dir_name: run_train_stage(
            c, m.trainer, sources[m.source], cfg.stage_dir("train") / n, row_ids))
        run_dirs[run.dir_name] = Path(run_dir)
        models[run.label] = str(Path(run_dir) / "final")
    if row_ids is not None and run_dirs:
        p.record["arms"] = check_same_rows_and_steps(run_dirs)
    probes = None
    if fact_check:
        probes = p.stage("paths-test", lambda: run_paths_stage(cfg, test_rows, kg_dir, cfg.stage_dir("paths-test")))
    results = p.stage("eval", lambda: run_eval(cfg, models, cfg.stage_dir("results"), rows=test_rows,
                                               probes=probes))
    p.record["results"] = str(results)
    print(f"pipeline: results table {Path(results) / 'table.md'}, chart {Path(results) / 'chart.png'}",
          flush=True)
    return p.finish()


def run_study(cfg, only: list[str] | None = None, rerun: bool = False) -> Path:  # noqa: ANN001 (KaleConfig)
    """Every study variant's pipeline (each resumes where it stopped), the side runs, then the report.
    `only`: just these variants, and `extra` for the side runs. A variant whose artifacts are gone but
    whose whole evaluation is in the committed results for the same recipe (kale_ray.study.committed)
    is not run again, unless `rerun`: a study resumed on a new machine does only what is missing."""
    from kale_ray.study import committed
    from kale_ray.study.report import committed_folder, write_report
    from kale_ray.study.side_runs import run_eval_runs, run_path_runs
    from kale_ray.study.variants import variant_config

    side_runs = only is None or "extra" in only
    names = [n for n in only if n != "extra"] if only is not None else list(cfg.study.variants)
    unknown = sorted(set(names) - set(cfg.study.variants))
    if unknown:
        raise ConfigError(f"study: unknown variants {unknown}; the config has {sorted(cfg.study.variants)}")
    configs = {name: variant_config(cfg, name) for name in names}  # every variant validates before any runs
    folder = committed_folder(cfg)
    for name, variant in configs.items():
        run_dir = variant.workdir_path / variant.run_name
        storage.fetch(run_dir / "pipeline.json")
        if not rerun and not (run_dir / "pipeline.json").is_file() and \
                committed.complete(folder, name, committed.recipe_hash(variant)):
            print(f"study: variant {name} is complete in {folder} (same recipe) and its artifacts are gone: "
                  "not run again (--rerun to run it)", flush=True)
            continue
        print(f"study: variant {name} -> {run_dir}", flush=True)
        run_pipeline(variant)
    if side_runs:
        run_path_runs(cfg)
        run_eval_runs(cfg)
    return write_report(cfg)
