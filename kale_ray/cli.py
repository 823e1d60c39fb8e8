"""`kale-ray <stage> ...`: parse arguments, load the config, call the stage's library function.

Each stage contributes a `commands.py` with `register(subparsers)`; those modules import only
argparse at module level so `kale-ray --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from kale_ray.config import ConfigError

# (module, one-line help). Order is the order of `kale-ray --help`.
COMMAND_MODULES: list[str] = [
    "kale_ray.commands",        # config
    "kale_ray.model.commands",  # model prepare
    "kale_ray.data.commands",   # data list/show
    "kale_ray.kg.commands",     # kg build/paths/link/extract
    "kale_ray.synth.commands",  # synth
    "kale_ray.train.commands",  # train
    "kale_ray.serving.commands",  # serve
    "kale_ray.eval.commands",   # eval
    "kale_ray.probe.commands",  # probe
    "kale_ray.pipeline_commands",  # pipeline
    "kale_ray.study.commands",  # study run/report
]


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """The options every config-driven command takes: a YAML file and dotted overrides."""
    parser.add_argument("--config", "-c", default=None, help="YAML config file (default: built-in defaults)")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value",
                        help="dotted overrides applied after the file, e.g. train.lr=1e-4")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kale-ray", description=(
        "KALE on Ray: KG path extraction, rationale synthesis, KA fine-tuning, serving and evaluation."))
    sub = parser.add_subparsers(dest="command", metavar="<stage>", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except ConfigError as err:
        print(f"kale-ray: {err}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
