"""`kale-ray pipeline`: every stage in order, resuming at the first incomplete one."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from kale_ray.cli.args import add_config_args

    parser = sub.add_parser("pipeline", help="run the whole pipeline (resumes after a crash)")
    add_config_args(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from kale_ray.config import load_config
    from kale_ray.pipeline import run_pipeline

    run_pipeline(load_config(args.config, args.overrides))
    return 0
