"""Connecting to Ray the same way from the CLI, jobs and tests."""

from __future__ import annotations

import os

from kale_ray.config.shared import RayConfig


def init_ray(cfg: RayConfig) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS, as under `ray job submit`), else start a local one.

    The job's workers get this process's environment defaults (kale_ray.env) wherever they run. A
    local cluster gets token auth off (Ray 2.60 turns it on by default and local tests have no token
    file), a bounded object store so it fits a laptop next to the model, and the dashboard unless
    turned off: Ray's state API lives there, and Ray Train's placement-group cleaner polls it (without
    it, every second of training logs "Failed to query Ray Train Controller actor state").
    """
    import ray

    from kale_ray.env import LOCAL_CLUSTER, worker_env_vars

    if ray.is_initialized():
        return
    runtime_env = {"env_vars": worker_env_vars()}
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True, runtime_env=runtime_env)
        return
    for key, value in LOCAL_CLUSTER.items():
        os.environ.setdefault(key, value)
    ray.init(num_cpus=cfg.num_cpus, object_store_memory=cfg.object_store_memory,
             include_dashboard=cfg.include_dashboard, log_to_driver=True, runtime_env=runtime_env)
