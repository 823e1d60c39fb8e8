"""`kale-ray config show|keys`: print the resolved config tree or the reference of every key."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from kale_ray.cli.args import add_config_args

    parser = sub.add_parser("config", help="show the resolved config or list every key")
    cmds = parser.add_subparsers(dest="config_command", required=True)
    show = cmds.add_parser("show", help="print the config after the file and overrides, as YAML")
    add_config_args(show)
    show.set_defaults(func=_show)
    keys = cmds.add_parser("keys", help="print every config key with type, default and meaning (markdown)")
    keys.set_defaults(func=_keys)


def _show(args: argparse.Namespace) -> int:
    import yaml

    from kale_ray.config import load_config

    cfg = load_config(args.config, args.overrides)
    print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def _keys(args: argparse.Namespace) -> int:
    from kale_ray.config import describe_keys

    print("| key | type | default | meaning |\n|---|---|---|---|")
    for key, type_name, default, desc in describe_keys():
        print(f"| `{key}` | {type_name} | `{default}` | {desc} |")
    return 0
