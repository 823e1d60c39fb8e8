"""Arguments that every config-driven command shares, kept apart so command modules import nothing heavy."""

from __future__ import annotations

import argparse


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """The options every config-driven command takes: a YAML file and dotted overrides."""
    parser.add_argument("--config", "-c", default=None, help="YAML config file (default: built-in defaults)")
    parser.add_argument("overrides", nargs="*", metavar="key.path=value",
                        help="dotted overrides applied after the file, e.g. train.optim.lr=1e-4")
