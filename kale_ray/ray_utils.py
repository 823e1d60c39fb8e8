"""Connecting to Ray the same way from the CLI, jobs and tests."""

from __future__ import annotations

import os
from typing import Any

from kale_ray.config.shared import RayConfig


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a Serve instance or a test server of our own)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def this_node() -> str:
    """The Ray node id of this process (hex), else its host name: what a stage records as the node
    that did its work (on one machine every node shares a host name; node ids tell them apart)."""
    import ray

    if ray.is_initialized():
        return str(ray.get_runtime_context().get_node_id())
    import platform

    return platform.node()


def with_node(batch: Any) -> Any:
    """An Arrow table with its `node` column set to this process's node (replacing an earlier stage's)."""
    import pyarrow as pa

    from kale_ray.artifacts import NODE_COLUMN

    if NODE_COLUMN in batch.column_names:
        batch = batch.drop_columns([NODE_COLUMN])
    return batch.append_column(NODE_COLUMN, pa.array([this_node()] * batch.num_rows, pa.string()))


_pinned: dict[str, Any] = {}  # the task options of pin_to_this_node's node, once pinned


def pin_to_this_node() -> None:
    """Ray Data and kale-ray's own tasks started from this process run on its node from now on: for work
    whose tasks share scratch files (the KG build) where the workdir is no shared filesystem."""
    import ray.data
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    strategy = NodeAffinitySchedulingStrategy(this_node(), soft=False)
    _pinned["scheduling_strategy"] = strategy
    ctx = ray.data.DataContext.get_current()
    ctx.scheduling_strategy = ctx.scheduling_strategy_large_args = strategy


def task_placement() -> dict[str, Any]:
    """Ray task options for `pin_to_this_node`'s node, if this process pinned one."""
    return dict(_pinned)


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
