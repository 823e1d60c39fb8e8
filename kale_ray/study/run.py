"""Run the study: one full pipeline per variant (each resumes where it stopped), the side runs (path
statistics, evaluations outside the training mix), then the report."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kale_ray.config import apply_overrides, build_config


def variant_config(cfg: Any, name: str) -> Any:
    """The study's config with one variant's overrides applied, under its own run name."""
    tree = cfg.model_dump(mode="json", exclude={"study"})
    tree = apply_overrides(tree, [*cfg.study.variants[name], f"run_name={variant_run_name(cfg, name)}"])
    return build_config(tree, f"study variant {name!r}")


def variant_run_name(cfg: Any, name: str) -> str:
    return f"{cfg.run_name}-{name}"


def variant_dirs(cfg: Any) -> dict[str, Path]:
    return {name: Path(cfg.workdir) / variant_run_name(cfg, name) for name in cfg.study.variants}


def extra_dir(cfg: Any, kind: str, title: str) -> Path:
    """Where a side run of the study (kind: paths | eval | kg) writes, named after its title."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return Path(cfg.workdir) / f"{cfg.run_name}-extra" / kind / slug


def run_path_runs(cfg: Any) -> None:
    from kale_ray.data.benchmarks import load_benchmark
    from kale_ray.kg.extract import run_paths_stage
    from kale_ray.kg.stage import build_kg, default_input
    from kale_ray.ray_utils import init_ray

    init_ray(cfg.ray)
    for title, spec in cfg.study.path_runs.items():
        kg_cfg = cfg.kg.model_copy(update={"source": spec.kg_source, "input": spec.kg_input})
        paths_cfg = cfg.paths.model_copy(update={"max_hops": spec.max_hops or cfg.paths.max_hops})
        run_cfg = cfg.model_copy(update={"kg": kg_cfg, "paths": paths_cfg})
        kg_dir = build_kg(spec.kg_source, default_input(run_cfg), extra_dir(cfg, "kg", spec.kg_source))
        rows = load_benchmark(spec.benchmark, cfg.data_root, split=cfg.data.source_split)
        print(f"study: paths run {title!r}: {spec.benchmark}, {spec.limit or rows.num_rows} rows", flush=True)
        run_paths_stage(run_cfg, rows.slice(0, spec.limit) if spec.limit else rows, kg_dir,
                        extra_dir(cfg, "paths", title))


def run_eval_runs(cfg: Any) -> None:
    from kale_ray.eval.run import run_eval

    for title, spec in cfg.study.eval_runs.items():
        eval_cfg = cfg.eval.model_copy(update={"benchmarks": spec.benchmarks, "limit": spec.limit,
                                               "known_incorrect": False, "test_split": None})
        models = spec.models or {"Vanilla": cfg.model.name_or_path}
        print(f"study: eval run {title!r}: {', '.join(models)} on {', '.join(spec.benchmarks)}", flush=True)
        run_eval(cfg.model_copy(update={"eval": eval_cfg}), models, extra_dir(cfg, "eval", title))


def run_study(cfg: Any, only: list[str] | None = None) -> Path:
    from kale_ray.pipeline import run_pipeline
    from kale_ray.study.report import write_report

    side_runs = only is None or "extra" in only
    names = [n for n in only if n != "extra"] if only is not None else list(cfg.study.variants)
    unknown = sorted(set(names) - set(cfg.study.variants))
    if unknown:
        from kale_ray.config import ConfigError

        raise ConfigError(f"study: unknown variants {unknown}; the config has {sorted(cfg.study.variants)}")
    configs = {name: variant_config(cfg, name) for name in names}  # every variant validates before any runs
    for name, variant in configs.items():
        print(f"study: variant {name} -> {Path(variant.workdir) / variant.run_name}", flush=True)
        run_pipeline(variant)
    if side_runs:
        run_path_runs(cfg)
        run_eval_runs(cfg)
    return write_report(cfg)
