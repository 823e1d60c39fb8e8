"""`kale-ray data list|show`: what benchmarks exist, and how a benchmark loads and splits."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from kale_ray.cli.args import add_config_args

    parser = sub.add_parser("data", help="list and inspect benchmarks and their train/test split")
    cmds = parser.add_subparsers(dest="data_command", required=True)
    lst = cmds.add_parser("list", help="registered benchmark names under the data root")
    add_config_args(lst)
    lst.set_defaults(func=_list)
    show = cmds.add_parser("show", help="load data.benchmark, print counts, skips and the split")
    show.add_argument("--strict", action="store_true",
                      help="fail on the first malformed row (same as data.strict=true)")
    add_config_args(show)
    show.set_defaults(func=_show)


def _list(args: argparse.Namespace) -> int:
    from kale_ray.config import load_config
    from kale_ray.data.benchmarks import registered_names

    cfg = load_config(args.config, args.overrides)
    print("\n".join(registered_names(cfg.data_root)))
    return 0


def _show(args: argparse.Namespace) -> int:
    import json

    from kale_ray.config import load_config
    from kale_ray.data.benchmarks import BenchmarkError
    from kale_ray.data.load import load_splits
    from kale_ray.data.split import mix

    cfg = load_config(args.config, [*args.overrides, *(["data.strict=true"] if args.strict else [])])
    try:
        splits = load_splits(cfg)
    except BenchmarkError as err:
        print(f"kale-ray data show: {err}")
        return 1
    print(json.dumps({"benchmark": cfg.data.benchmark, "train": splits.train.num_rows,
                      "test": splits.test.num_rows, "report": splits.report.as_dict()}, indent=2))
    # What the limits drew: rows per benchmark and subject (or file), e.g. MMLU's subjects.
    for side, table in (("train", splits.train), ("test", splits.test)):
        for bench, counts in mix(table).items():
            shown = ", ".join(f"{k} {n}" for k, n in counts.items())
            print(f"{side} mix: {bench}: {sum(counts.values())} rows from {len(counts)} "
                  f"{'strata' if len(counts) != 1 else 'stratum'}: {shown}")
    for row in splits.train.slice(0, 2).to_pylist():
        print(json.dumps(row, ensure_ascii=False))
    return 0
