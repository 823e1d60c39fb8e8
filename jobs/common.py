"""What every job shares: environment defaults, then the matching `kale-ray <stage>` command."""

from __future__ import annotations

import os
from collections.abc import Sequence

# Defaults only: a value given through `--runtime-env-json '{"env_vars": {...}}'` or the shell wins.
ENV_DEFAULTS = {
    "RAY_AUTH_MODE": "disabled",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}


def run_stage(stage: str, argv: Sequence[str] | None) -> int:
    """`python -m jobs.<name> ARGS` == `kale-ray <stage> ARGS`, with the environment defaults set.

    Under `ray job submit`, RAY_ADDRESS points the stage at the job's cluster; the driver itself
    asks for no GPU (GPU work runs in the actors and train workers the stage starts).
    """
    import sys

    from kale_ray.cli import main

    for key, value in ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    return main([stage, *(sys.argv[1:] if argv is None else argv)])
