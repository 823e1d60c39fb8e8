"""Where the study's runs are: each variant's config and run directory, and the side runs' directories.

Both the side runs (which write there) and the report (which reads there) use these, so neither
imports the other.
"""

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
    return {name: cfg.workdir_path / variant_run_name(cfg, name) for name in cfg.study.variants}


def extra_dir(cfg: Any, kind: str, title: str) -> Path:
    """Where a side run of the study (kind: paths | eval | kg) writes, named after its title."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return cfg.workdir_path / f"{cfg.run_name}-extra" / kind / slug
