"""Peak memory of the trainer's real step on CPU, measured in a fresh process, for the memory plan's checks
(tests/unit/test_train_plan.py) and bench/train_memory.py.

One process per measurement: the resident set of the imports is the baseline; the model and its runner
(the DDP runner without a process group, as bench/train.py) are built, one warm-up step allocates the
optimizer states, then the peak (VmHWM, reset through /proc/self/clear_refs) of a second step is taken.
glibc's mmap threshold is pinned (MALLOC_MMAP_THRESHOLD_) so that freed tensors leave the resident set
and "at rest" means what is still allocated. Rows are synthetic token ids of exactly max_length (the
plan's worst case: every row at the cap), an 8-token answer, and for ka a target view of the same
length sharing the first half with the plain view.

    python -m tests.train_memory '{"model": PATH, "train": {...}, "method": "ka"}'
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ANSWER = 8


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def synthetic_batch(rows: int, length: int, method: str, seed: int = 0) -> dict[str, list]:
    import random

    rng = random.Random(seed)
    batch: dict[str, list] = {"student_ids": [], "target_ids": [], "answer_len": []}
    for _ in range(rows):
        student = [rng.randrange(100, 40000) for _ in range(length)]
        target = student[: length // 2] + [rng.randrange(100, 40000) for _ in range(length - length // 2 - ANSWER)]
        batch["student_ids"].append(student)
        batch["target_ids"].append(target + student[-ANSWER:] if method == "ka" else [])
        batch["answer_len"].append(ANSWER)
    return batch


def measure(model: str, train: dict[str, Any], method: str, attn: str = "sdpa") -> dict[str, int]:
    """Bytes: baseline (imports), model (resident after building model and runner), rest (after a step),
    peak (highest during the next step)."""
    import torch

    torch.set_num_threads(1)
    import peft  # noqa: F401 (imported before the baseline, as everything the step needs)
    import transformers  # noqa: F401

    from kale_ray.config.train import TrainConfig
    from kale_ray.train.loop import build_model, train_step
    from kale_ray.train.runners import DDPRunner
    from kale_ray.train.targets import frozen_target

    tc = TrainConfig.model_validate({**train, "method": method, "strategy": "ddp", "workers": 1})
    batch = synthetic_batch(tc.micro_batch_size, tc.max_length, method)
    baseline = _status("VmRSS")
    torch.manual_seed(0)
    runner = DDPRunner(build_model(model, tc, attn_implementation=attn), tc, 10, 1, torch.device("cpu"))
    frozen = frozen_target(method, tc, runner, lambda: build_model(model, tc, trainable=False, attn_implementation=attn))
    loaded = _status("VmRSS")

    def step() -> None:
        train_step([batch], method=method, tc=tc, runner=runner, frozen=frozen, pad_id=0, device=torch.device("cpu"))

    step()
    rest = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    step()
    return {"baseline": baseline, "model": loaded - baseline, "rest": rest - baseline,
            "peak": _status("VmHWM") - baseline, "step": _status("VmHWM") - rest}


def measure_in_subprocess(model: str, train: dict[str, Any], method: str, attn: str = "sdpa",
                          timeout: float = 900) -> dict[str, int]:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    spec = json.dumps({"model": str(model), "train": train, "method": method, "attn": attn})
    proc = subprocess.run([sys.executable, "-m", "tests.train_memory", spec], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement failed: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    result = measure(args["model"], args["train"], args["method"], args.get("attn", "sdpa"))
    print(json.dumps(result), flush=True)
