"""Run the study: one full pipeline per variant (each resumes where it stopped), then the report."""

from __future__ import annotations

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


def run_study(cfg: Any, only: list[str] | None = None) -> Path:
    from kale_ray.pipeline import run_pipeline
    from kale_ray.study.report import write_report

    names = only or list(cfg.study.variants)
    unknown = sorted(set(names) - set(cfg.study.variants))
    if unknown:
        from kale_ray.config import ConfigError

        raise ConfigError(f"study: unknown variants {unknown}; the config has {sorted(cfg.study.variants)}")
    configs = {name: variant_config(cfg, name) for name in names}  # every variant validates before any runs
    for name, variant in configs.items():
        print(f"study: variant {name} -> {Path(variant.workdir) / variant.run_name}", flush=True)
        run_pipeline(variant)
    return write_report(cfg)
