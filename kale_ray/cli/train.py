"""`kale-ray train --config X [--method ka] [--data DIR]`: one method's run of the train stage.

`kale-ray train plan --config X [--method ka] [--model-config FILE]`: the run's memory plan per worker
(kale_ray/train/plan.py), from the model's config.json alone. `plan` is read as the first positional
word, before the dotted overrides, so `kale-ray train key=value` keeps working."""

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
    parser.add_argument("--model-config", default=None,
                        help="train plan: the model's config.json (default: found from model.name_or_path locally)")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="KA fine-tuning (or sft / ce-rationale) on Ray Train + DeepSpeed; "
                                          "`train plan`: the memory plan per worker")
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kale_ray.config import load_config
    from kale_ray.train.stage import run_train_stage

    if args.overrides[:1] == ["plan"]:
        return plan(args)
    cfg = load_config(args.config, args.overrides)
    method = args.method or cfg.train.method
    default = cfg.stage_dir("data") if method == "sft" else cfg.stage_dir("synth")
    out = run_train_stage(cfg, method, Path(args.data) if args.data else default,
                          Path(args.out) if args.out else None)
    print(out)
    return 0



def plan(args: argparse.Namespace) -> int:
    from kale_ray.config import load_config
    from kale_ray.train.plan import ModelShape, format_plan, make_plan, read_model_config

    cfg = load_config(args.config, args.overrides[1:])
    method = args.method or cfg.train.method
    source = args.model_config or cfg.model.name_or_path
    shape = ModelShape.from_config(read_model_config(source, cfg.model.cache_dir))
    result = make_plan(shape, cfg.train, method, cfg.model.attn_implementation)
    print(format_plan(result, cfg.model.name_or_path, method))
    return 0 if cfg.train.gpu_memory_gb is None or result.fits(cfg.train.gpu_memory_gb) else 1
