"""`kale-ray synth`: benchmark train split -> KG paths -> rationale prompts -> generation -> artifact."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from kale_ray.cli.args import add_config_args

    parser = sub.add_parser("synth", help="write KG-guided rationales for the training split (KI)")
    parser.add_argument("--paths", default=None,
                        help="use this paths artifact instead of running the data, KG and paths stages")
    parser.add_argument("--out", default=None, help="artifact directory (default: <workdir>/<run>/synth)")
    add_config_args(parser)
    parser.set_defaults(func=_synth)


def _synth(args: argparse.Namespace) -> int:
    import json

    from kale_ray.artifacts import Manifest
    from kale_ray.config import load_config
    from kale_ray.synth.stage import SynthInputError, run_synth_from_benchmark

    cfg = load_config(args.config, args.overrides)
    try:
        out = run_synth_from_benchmark(cfg, args.paths, args.out)
    except SynthInputError as err:
        print(f"kale-ray synth: {err}")
        return 1
    manifest = Manifest.read(out)
    print(json.dumps({"artifact": str(out), "counts": manifest.counts if manifest else {}}, indent=2))
    return 0
