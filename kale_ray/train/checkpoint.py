"""What a Ray Train checkpoint of a run holds besides the optimizer shards: where training stood.

`train_state.json` (rank 0) records the optimizer step; the data position follows from it (epoch =
step // steps_per_epoch, micro-batches already consumed in that epoch = the rest times grad_accum).
`export/` (final checkpoint only) holds the trainable weights: the LoRA adapter, or the full model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_FILE = "train_state.json"
EXPORT_DIR = "export"


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0
    total_steps: int = 0
    steps_per_epoch: int = 1
    attempt: int = 0
    final: bool = False
    nodes: list[str] = field(default_factory=list)  # every node a worker of any attempt ran on

    def micro_batches_to_skip(self, grad_accum: int) -> int:
        return (self.step % self.steps_per_epoch) * grad_accum


def write_state(directory: Path, state: TrainState) -> None:
    (Path(directory) / STATE_FILE).write_text(json.dumps(asdict(state), indent=2) + "\n")


def read_state(directory: Path) -> TrainState:
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: not a kale-ray training checkpoint")
    return TrainState(**json.loads(path.read_text()))


def checkpoint_dir_name(step: int) -> str:
    return f"step-{step:06d}"


def latest_checkpoint(storage: Path) -> Path | None:
    """The newest checkpoint directory (by step) under a run's Ray Train storage folder, if any."""
    found = [p for p in Path(storage).glob("*/step-*") if (p / STATE_FILE).is_file()]
    return max(found, key=lambda p: read_state(p).step) if found else None
