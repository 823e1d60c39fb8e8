"""Building the Ray Train TorchTrainer of a run from the config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kale_ray.config.train import TrainConfig
from kale_ray.storage import ray_storage

STORAGE_NAME = "ray"  # Ray Train's folder inside the run directory: checkpoints and its own state


def build_trainer(tc: TrainConfig, run_dir: Path, dataset: Any, loop_config: dict[str, Any]) -> Any:
    """Workers, failure retries and checkpoint retention from the config.

    Re-running with the same run directory makes Ray Train (v2) restore its checkpoint manager from
    the storage folder, so `ray.train.get_checkpoint()` hands the workers the latest checkpoint.
    """
    from ray.data import ExecutionOptions
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from kale_ray.env import verbose
    from kale_ray.train.loop import train_loop_per_worker

    resources: dict[str, float] = {"CPU": tc.cpus_per_worker}
    if tc.use_gpu:
        resources["GPU"] = 1
    scaling = ScalingConfig(num_workers=tc.workers, use_gpu=tc.use_gpu, resources_per_worker=resources)
    storage_path, storage_filesystem = ray_storage(run_dir)  # the object store itself, when workdir is one
    run = RunConfig(
        name=STORAGE_NAME, storage_path=storage_path, storage_filesystem=storage_filesystem,
        checkpoint_config=CheckpointConfig(num_to_keep=tc.checkpoint.keep),
        failure_config=FailureConfig(max_failures=tc.max_failures),
        # Ray Train's own INFO lines (resource requests, worker-group starts) only with --verbose.
        logging_config=LoggingConfig(log_level="INFO" if verbose() else "WARNING"))
    data_config = DataConfig(execution_options=ExecutionOptions(preserve_order=True))
    return TorchTrainer(
        train_loop_per_worker, train_loop_config=loop_config, scaling_config=scaling, run_config=run,
        datasets={"train": dataset}, dataset_config=data_config,
        torch_config=TorchConfig(backend="nccl" if tc.use_gpu else "gloo"))
