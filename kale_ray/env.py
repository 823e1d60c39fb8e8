"""Environment defaults, in one place: what every kale-ray process (CLI, job driver, Ray workers) needs
set before the libraries it configures are imported. A value already set by the shell, a
`--runtime-env-json`, or a cluster's setup wins: these are defaults only."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

# Every process: progress lines reach `ray job logs --follow` at once; tokenizers do not fork threads
# inside Ray workers; Ray Train leaves `print` alone (its patch sends each line both to the console
# and to a logger that prints it again).
DEFAULTS: dict[str, str] = {
    "PYTHONUNBUFFERED": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
}

# Library chatter that buries the stages' own progress lines, off unless --verbose.
QUIET: dict[str, str] = {
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "RAY_DATA_LOGGING_CONFIG": str(Path(__file__).with_name("ray_data_logging.yaml")),
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning",
}

# Offline mode (KALE_OFFLINE=1): the embedded default and the tests load models from local files only;
# clusters that download hub models leave it off.
OFFLINE: dict[str, str] = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

# A cluster this process starts itself: Ray 2.60 turns token auth on, and a local cluster has no token.
LOCAL_CLUSTER: dict[str, str] = {"RAY_AUTH_MODE": "disabled"}

VERBOSE = "KALE_VERBOSE"

# Where an object-store workdir is mirrored, and the store's endpoint: not secrets, so they travel to
# the job's workers; credentials stay in each node's own environment (or its instance role).
STORE: tuple[str, ...] = ("KALE_STORE_MIRRORS", "KALE_MIRROR_ROOT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                          "AWS_DEFAULT_REGION", "AWS_REGION")


def deepspeed_env(use_gpu: bool) -> dict[str, str]:
    """What DeepSpeed reads at import: the accelerator (it guesses wrong on a CPU-only node), and no
    op builds (its JIT compiles take minutes and are not needed with torch's AdamW)."""
    return {"DS_ACCELERATOR": "cuda" if use_gpu else "cpu", "DS_BUILD_OPS": "0"}


def verbose() -> bool:
    return os.environ.get(VERBOSE, "") not in ("", "0")


def apply_defaults(verbose_logs: bool = False) -> None:
    """Set the defaults in this process (and so in a local Ray cluster it starts). `verbose_logs`
    keeps every library's output, and is remembered in KALE_VERBOSE for the code that reads it."""
    if verbose_logs:
        os.environ[VERBOSE] = "1"
    offline = os.environ.get("KALE_OFFLINE", "") not in ("", "0")
    for key, value in {**DEFAULTS, **({} if verbose() else QUIET), **(OFFLINE if offline else {})}.items():
        os.environ.setdefault(key, value)
    if not verbose():  # PYTHONWARNINGS reaches the processes started from here; this one, too
        for category in (DeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category)


def worker_env_vars() -> dict[str, str]:
    """The defaults this process runs with, for a job's Ray workers on other nodes (whose environment
    is the cluster's, not the driver's). Keys the submitted job's runtime_env already sets are left to
    it: Ray refuses to merge a driver's runtime_env that sets the same variable."""
    keys = [*DEFAULTS, *QUIET, *OFFLINE, VERBOSE, *STORE]
    job = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}") or "{}")
    taken = set((job.get("runtime_env") or {}).get("env_vars") or {})
    return {k: os.environ[k] for k in keys if k in os.environ and k not in taken}
