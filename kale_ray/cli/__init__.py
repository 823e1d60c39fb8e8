"""`kale-ray <stage> ...` and `python -m kale_ray`: parse arguments, load the config, call a stage.

The CLI is the top layer: it imports the stages, never the reverse. Each command module imports only
argparse at module level (the stage is imported inside the handler), so `kale-ray --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from kale_ray.cli.args import add_config_args
from kale_ray.config import ConfigError

__all__ = ["add_config_args", "build_parser", "main", "run_job"]

# Order is the order of `kale-ray --help`.
COMMANDS: list[str] = ["config", "model", "data", "kg", "synth", "train", "serve", "eval", "probe", "pipeline",
                       "study"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kale-ray", description=(
        "KALE on Ray: KG path extraction, rationale synthesis, KA fine-tuning, serving and evaluation."))
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="show every library's log lines (Ray, Ray Data, Ray Train, DeepSpeed, transformers)")
    sub = parser.add_subparsers(dest="command", metavar="<stage>", required=True)
    for name in COMMANDS:
        importlib.import_module(f"kale_ray.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from kale_ray import env

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse takes one run of positionals: dotted overrides after an option (`train plan --config X k=v`)
    # come back unparsed and join the command's overrides
    if extra and hasattr(args, "overrides") and not any(a.startswith("-") for a in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    env.apply_defaults(verbose_logs=args.verbose)
    try:
        result = args.func(args)
    except ConfigError as err:
        print(f"kale-ray: {err}", file=sys.stderr)
        return 2
    return int(result or 0)


def run_job(stage: str, argv: Sequence[str] | None = None) -> int:
    """`python -m jobs.<name> ARGS` == `kale-ray <stage> ARGS`: the same parser, defaults and exit code,
    whether run locally, under `ray job submit --working-dir .`, or called from a test."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = [a for a in args if a in ("--verbose", "-v")]
    return main([*verbose, stage, *(a for a in args if a not in verbose)])
