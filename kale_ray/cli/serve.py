"""`kale-ray serve`: the OpenAI-compatible Ray Serve API on serve.host:serve.port (127.0.0.1:8000)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from kale_ray.cli.args import add_config_args

    parser = sub.add_parser("serve", help="serve models and LoRA adapters through an OpenAI-compatible API",
                            description="Serves serve.models (default: model.name_or_path). Shortcuts: "
                                        "--model NAME=PATH and --adapter NAME=PATH (adapters go on the first model).")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH", help="a base model")
    parser.add_argument("--adapter", action="append", default=[], metavar="NAME=PATH", help="a LoRA adapter")
    add_config_args(parser)
    parser.set_defaults(func=_run)


def _pairs(items: list[str], what: str) -> list[tuple[str, str]]:
    from kale_ray.config import ConfigError

    out = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--{what} {item!r}: expected NAME=PATH")
        out.append((name, path))
    return out


def _run(args: argparse.Namespace) -> int:
    import json

    from kale_ray.config import ConfigError, load_config
    from kale_ray.serving.app import run_server

    overrides = list(args.overrides)
    models = [{"name": n, "path": p, "adapters": {}} for n, p in _pairs(args.model, "model")]
    adapters = dict(_pairs(args.adapter, "adapter"))
    if adapters and not models:
        cfg = load_config(args.config, overrides)
        models = [m.model_dump() for m in cfg.serve.models] or [
            {"name": cfg.model.name_or_path.rstrip("/").split("/")[-1], "path": cfg.model.name_or_path,
             "adapters": {}}]
    if adapters:
        if not models:
            raise ConfigError("--adapter needs a base model")
        models[0]["adapters"].update(adapters)
    if models:
        overrides.append(f"serve.models={json.dumps(models)}")
    run_server(load_config(args.config, overrides))
    return 0
