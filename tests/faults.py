"""Fault injection from the tests' side: real process deaths at chosen moments, with no hook in kale_ray.

The session's Ray cluster runs `install` in every worker process (Ray's `worker_process_setup_hook`),
which wraps the stage actors' `__call__`. A wrapped call dies only when a test has armed a fault by
writing a file into the session's fault directory; the first process to claim the file (an atomic
rename) dies, so each armed fault fires exactly once however many actors race for it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

FAULTS_ENV = "KALE_TEST_FAULTS"
KILL_PATHS_ACTOR = "kill-paths-actor"    # payload: a row id; the actor whose batch holds it dies
KILL_SYNTH_ACTOR = "kill-synth-actor"    # the first synth actor to start a batch dies


def arm(directory: Path, fault: str, payload: str = "") -> Path:
    path = Path(directory) / fault
    path.write_text(payload)
    return path


def fired(directory: Path, fault: str) -> list[int]:
    """Pids of the processes that died of this fault."""
    return [int(p.name.rsplit(".", 1)[1]) for p in Path(directory).glob(f"{fault}.fired.*")]


def _claim(directory: Path, fault: str, wanted: set[str] | None = None) -> bool:
    path = directory / fault
    try:
        payload = path.read_text().strip()
    except FileNotFoundError:
        return False
    if wanted is not None and payload not in wanted:
        return False
    try:
        path.rename(directory / f"{fault}.fired.{os.getpid()}")
    except FileNotFoundError:  # another process claimed it first
        return False
    return True


def _wrap(cls: Any, fault: str, by_row: bool) -> None:
    original = cls.__call__

    def __call__(self: Any, batch: Any) -> Any:
        directory = Path(os.environ[FAULTS_ENV])
        ids = set(batch.column("id").to_pylist()) if by_row else None
        if _claim(directory, fault, ids):
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, batch)

    cls.__call__ = __call__


def install() -> None:
    """Ray's worker_process_setup_hook: arm-able deaths in the paths and synth actors."""
    if not os.environ.get(FAULTS_ENV):
        return
    from kale_ray.kg.extract import PathsActor
    from kale_ray.synth.pipeline import SynthWorker

    _wrap(PathsActor, KILL_PATHS_ACTOR, by_row=True)
    _wrap(SynthWorker, KILL_SYNTH_ACTOR, by_row=False)
