"""Connecting to Ray the same way from the CLI, jobs and tests."""

from __future__ import annotations

import os

from kale_ray.sections import RayConfig


def init_ray(cfg: RayConfig) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS, as under `ray job submit`), else start a local one.

    A local cluster gets token auth off (Ray 2.60 turns it on by default and local tests have no
    token file) and a bounded object store, so it fits a laptop next to the model.
    """
    import ray

    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=cfg.num_cpus, object_store_memory=cfg.object_store_memory,
             include_dashboard=cfg.include_dashboard, log_to_driver=True)
