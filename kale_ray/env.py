"""Environment defaults, in one place: what every kale-ray process (CLI, job driver, Ray workers) needs
set before the libraries it configures are imported. A value already set by the shell, a
`--runtime-env-json`, or a cluster's setup wins: these are defaults only."""

from __future__ import annotations

import os

# Every process: progress lines reach `ray job logs --follow` at once; tokenizers do not fork threads
# inside Ray workers.
DEFAULTS: dict[str, str] = {
    "PYTHONUNBUFFERED": "1",
    "TOKENIZERS_PARALLELISM": "false",
}

# Library chatter that buries the stage's own progress lines, off unless --verbose.
QUIET: dict[str, str] = {
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning",
}

# Offline mode: the embedded default and the tests load models only from local files; clusters that
# download hub models leave it unset.
OFFLINE: dict[str, str] = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def apply_defaults(verbose: bool = False) -> None:
    """Set the defaults in this process (and so in the local Ray cluster it starts). `verbose` keeps
    every library's output and is remembered in KALE_VERBOSE for the code that quiets Ray Data."""
    if verbose:
        os.environ["KALE_VERBOSE"] = "1"
    for key, value in {**DEFAULTS, **({} if verbose or os.environ.get("KALE_VERBOSE") else QUIET)}.items():
        os.environ.setdefault(key, value)

