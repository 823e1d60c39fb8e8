"""What every job shares: argument parsing, environment defaults, connecting to Ray."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from kale_ray.config import KaleConfig, load_config

# Defaults only: a value given through `--runtime-env-json '{"env_vars": {...}}'` or the shell wins.
ENV_DEFAULTS = {
    "RAY_AUTH_MODE": "disabled",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}


def job_config(name: str, argv: Sequence[str] | None) -> KaleConfig:
    """Parse `--config FILE key=value ...`, set environment defaults and connect to Ray.

    The driver asks for no GPU itself: GPU work runs in the actors and train workers it starts.
    """
    parser = argparse.ArgumentParser(prog=f"python -m jobs.{name}")
    parser.add_argument("--config", "-c", default=None, help="YAML config file")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value", help="dotted config overrides")
    args = parser.parse_args(argv)
    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    cfg = load_config(args.config, args.overrides)
    from kale_ray.ray_utils import init_ray

    init_ray(cfg.ray)
    return cfg
