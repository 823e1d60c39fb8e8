"""Experiment trackers rank 0 reports the training metrics to: TensorBoard, MLflow, wandb.

As Ray Train's experiment-tracking guide does it: the native library's calls inside the training
function, on the rank-0 worker only, so nothing is logged twice. metrics.jsonl is written whatever the
choice (the plot and the tests read it). A restarted worker group continues the same MLflow / wandb run:
the run's id is kept in `tracking.json` beside the metrics. MLflow defaults to a local file store
(`mlruns/` in the run's directory) and wandb to offline mode, so neither needs a server or network.
mlflow and wandb are optional extras; asking for one that is not installed fails before training with
the pip command that installs it.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

from kale_ray.config import ConfigError
from kale_ray.config.train import TrainConfig

IDS_FILE = "tracking.json"
EXTRAS = {"mlflow": "mlflow", "wandb": "wandb"}  # tracker -> kale-ray extra
SCALARS = ("loss", "kl", "ce", "tokens_per_s", "lr")


def check_trackers(report_to: list[str]) -> None:
    """A clear error on the driver, before any worker starts, for a tracker whose library is missing."""
    for name in report_to:
        if name in EXTRAS and importlib.util.find_spec(name) is None:
            raise ConfigError(f"train.report_to includes {name}, which is not installed: "
                              f"pip install 'kale-ray[{EXTRAS[name]}]' (or drop {name} from train.report_to)")


def _ids(run_dir: Path) -> dict[str, str]:
    path = run_dir / IDS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _save_id(run_dir: Path, key: str, value: str) -> None:
    from kale_ray.artifacts import atomic_write_json

    atomic_write_json(run_dir / IDS_FILE, _ids(run_dir) | {key: value})


class TensorBoard:
    def __init__(self, run_dir: Path, **_: Any) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(f"train/{key}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MLflow:
    """An MlflowClient (no process-global active run) on `tracking_uri`, default `<run_dir>/mlruns`."""

    def __init__(self, run_dir: Path, tc: TrainConfig, experiment: str, run: str, params: dict[str, Any]) -> None:
        import os

        from mlflow.tracking import MlflowClient

        self.uri = tc.tracking_uri or (run_dir / "mlruns").resolve().as_uri()
        if self.uri.startswith("file:"):  # MLflow 3 asks file-store users to opt in; ours is the default
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=self.uri)
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        self.run_id = _ids(run_dir).get("mlflow_run_id")
        if self.run_id is None:
            self.run_id = self.client.create_run(experiment_id, run_name=run).info.run_id
            _save_id(run_dir, "mlflow_run_id", self.run_id)
            for key, value in params.items():
                self.client.log_param(self.run_id, key, value)

    def log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class Wandb:
    """wandb.init in `tc.wandb_mode` (offline by default: files under `<run_dir>/wandb`)."""

    def __init__(self, run_dir: Path, tc: TrainConfig, experiment: str, run: str, params: dict[str, Any]) -> None:
        import wandb

        run_id = _ids(run_dir).get("wandb_run_id")
        self.run = wandb.init(project=experiment, name=run, dir=str(run_dir), mode=tc.wandb_mode, id=run_id,
                              resume="allow", config=params, reinit="create_new")
        if run_id is None:
            _save_id(run_dir, "wandb_run_id", self.run.id)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log({f"train/{k}": v for k, v in metrics.items()}, step=step)

    def close(self) -> None:
        self.run.finish()


TRACKERS = {"tensorboard": TensorBoard, "mlflow": MLflow, "wandb": Wandb}


def open_trackers(run_dir: Path, tc: TrainConfig, experiment: str, run: str) -> list[Any]:
    """Rank 0's trackers of `tc.report_to`, each told the run's config as its parameters."""
    check_trackers(tc.report_to)
    params = {"method": tc.method, "direction": tc.ka.direction, "target": tc.ka.target, "lr": tc.optim.lr,
              "lora": tc.lora.enabled, "micro_batch_size": tc.micro_batch_size, "grad_accum": tc.grad_accum,
              "workers": tc.workers, "max_length": tc.max_length, "zero_stage": tc.zero_stage}
    return [TRACKERS[name](run_dir=run_dir, tc=tc, experiment=experiment, run=run, params=params)
            for name in dict.fromkeys(tc.report_to)]
