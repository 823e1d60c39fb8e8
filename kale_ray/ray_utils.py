"""Connecting to Ray the same way from the CLI, jobs and tests."""

from __future__ import annotations

import logging
import os

from kale_ray.sections import RayConfig


def init_ray(cfg: RayConfig) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS, as under `ray job submit`), else start a local one.

    A local cluster gets token auth off (Ray 2.60 turns it on by default and local tests have no
    token file), a bounded object store so it fits a laptop next to the model, and the dashboard
    when asked: Ray's state API lives there, and Ray Train's placement-group cleaner polls it (without
    it, every second of training logs "Failed to query Ray Train Controller actor state").
    """
    import ray

    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=cfg.num_cpus, object_store_memory=cfg.object_store_memory,
                 include_dashboard=cfg.include_dashboard, log_to_driver=True)
    if not os.environ.get("KALE_VERBOSE"):
        quiet_ray_data()


def quiet_ray_data() -> None:
    """Ray Data's execution plans and its every-10-seconds progress dump go to its own log file
    (ray-data.log in the session's logs) instead of the driver's console; the stages print their own
    progress lines (rows/s, ETA). Warnings still reach the console."""
    import ray.data  # noqa: F401 (configures the "ray.data" logger)

    for handler in logging.getLogger("ray.data").handlers:
        if not getattr(handler, "baseFilename", None):  # the console handler, not the file one
            handler.setLevel(logging.WARNING)
