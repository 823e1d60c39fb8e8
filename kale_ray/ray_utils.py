"""Connecting to Ray the same way from the CLI, jobs and tests."""

from __future__ import annotations

import os

from kale_ray.config.shared import RayConfig


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a Serve instance or a test server of our own)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cluster_address(cfg: RayConfig) -> str | None:
    """The cluster to join (`ray.address`, else RAY_ADDRESS as under `ray job submit`); None: kale-ray
    starts a local one, whose size is fixed."""
    return cfg.address or os.environ.get("RAY_ADDRESS")


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
    address = cluster_address(cfg)
    if address:
        ray.init(address=address, log_to_driver=True, runtime_env=runtime_env)
        return
    for key, value in LOCAL_CLUSTER.items():
        os.environ.setdefault(key, value)
    ray.init(num_cpus=cfg.num_cpus, object_store_memory=cfg.object_store_memory,
             include_dashboard=cfg.include_dashboard, log_to_driver=True, runtime_env=runtime_env)
