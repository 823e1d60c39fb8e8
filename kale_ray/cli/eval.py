"""`kale-ray eval`: score models (paths, registered names or served models) on benchmarks."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from kale_ray.cli.args import add_config_args

    parser = sub.add_parser(
        "eval", help="score models on benchmarks (log-likelihood MC, BBH exact match, known&incorrect)",
        description="Without --model: the base model and every trained method of the config's run, on its "
                    "held-out split, into <workdir>/<run>/results. Each --model is SPEC or METHOD=SPEC; SPEC is "
                    "a checkpoint path, a registered name or a served model http://127.0.0.1:8000/v1#model-name.")
    parser.add_argument("--model", "-m", action="append", default=None, metavar="[METHOD=]SPEC",
                        help="model to score (repeat to compare methods in one table and chart)")
    parser.add_argument("--benchmark", "-b", action="append", metavar="NAME_OR_PATH",
                        help="benchmark name or file (repeatable; default: eval.benchmarks)")
    parser.add_argument("--limit", type=int, default=None, help="score at most N items per benchmark")
    parser.add_argument("--probes", default=None, help="paths or rationales artifact for known&incorrect")
    parser.add_argument("--out", "-o", default=None, help="results directory (default: <workdir>/<run>/results)")
    add_config_args(parser)
    parser.set_defaults(func=_run)


def parse_models(items: list[str]) -> dict[str, str]:
    """`sft=/runs/sft/final` -> {"sft": ...}; a bare spec is named after its last path part or model."""
    models: dict[str, str] = {}
    for item in items:
        name, sep, spec = item.partition("=")
        if not sep or "://" in name:
            spec = item
            name = item.split("#", 1)[1] if "#" in item else item.rstrip("/").split("/")[-1]
        models[name] = spec
    return models


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kale_ray.config import load_config
    from kale_ray.eval.run import run_eval, run_eval_stage

    overrides = list(args.overrides)
    if args.benchmark:
        overrides.append(f"eval.benchmarks={args.benchmark}")
    if args.limit is not None:
        overrides.append(f"eval.limit={args.limit}")
    cfg = load_config(args.config, overrides)
    out = Path(args.out) if args.out else None
    if args.model:
        run_eval(cfg, parse_models(args.model), out or cfg.stage_dir("results"), probes=args.probes)
    else:
        run_eval_stage(cfg, probes=Path(args.probes) if args.probes else None, out=out)
    return 0
