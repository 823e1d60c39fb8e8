"""`serve run serve/config.yaml`: the kale-ray Serve application built from a kale-ray config.

`args` of the application in config.yaml: `config` (a kale-ray YAML, optional) and `overrides`
(dotted `key=value` strings), exactly as `kale-ray serve --config FILE key=value ...` takes them.
"""

from __future__ import annotations

from typing import Any

from kale_ray.config import load_config
from kale_ray.serving.app import build_app


def build(args: dict[str, Any]) -> Any:
    cfg = load_config(args.get("config"), list(args.get("overrides") or []))
    return build_app(cfg)
