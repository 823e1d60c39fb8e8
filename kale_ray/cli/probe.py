"""`kale-ray probe`: semantic-entropy labels, hidden states, an MLP probe per layer, AUROC by layer."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from kale_ray.cli.args import add_config_args

    parser = sub.add_parser(
        "probe", help="knowledge probe (KA2L): known/unknown labels, hidden states, AUROC by layer",
        description="Labels the data stage's train and held-out rows by the semantic entropy of sampled "
                    "answers, extracts last-token hidden states on Ray Data, trains an MLP probe per "
                    "probe.layers entry and reports held-out AUROC, naming the best layer.")
    parser.add_argument("--out", "-o", default=None, help="results directory (default: <run>/results/probe)")
    add_config_args(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from kale_ray.config import load_config
    from kale_ray.probe.stage import run_probe_stage

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"probe.out={args.out}")
    run_probe_stage(load_config(args.config, overrides))
    return 0
