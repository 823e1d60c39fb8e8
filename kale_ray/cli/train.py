"""`kale-ray train --config X [--method ka] [--data DIR]`: one method's run of the train stage."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from kale_ray.cli.args import add_config_args

    add_config_args(parser)
    parser.add_argument("--method", choices=["ka", "sft", "ce-rationale"], default=None,
                        help="what to train (default: train.method)")
    parser.add_argument("--data", default=None,
                        help="input artifact: the rationales dir (ka, ce-rationale; default <run>/synth) "
                             "or the data stage dir with train.parquet (sft; default <run>/data)")
    parser.add_argument("--out", default=None, help="run directory (default <run>/train/<method>)")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="KA fine-tuning (or sft / ce-rationale) on Ray Train + DeepSpeed")
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kale_ray.config import load_config
    from kale_ray.train.stage import run_train_stage

    cfg = load_config(args.config, args.overrides)
    method = args.method or cfg.train.method
    default = cfg.stage_dir("data") if method == "sft" else cfg.stage_dir("synth")
    out = run_train_stage(cfg, method, Path(args.data) if args.data else default,
                          Path(args.out) if args.out else None)
    print(out)
    return 0

