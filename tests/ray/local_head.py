"""A real `ray start --head` cluster for tests, stopped without touching anyone else's Ray, and worker
nodes that join it (`worker_node`): real raylets on this machine, each with its own temp dir.

`ray stop` kills every Ray process of the user (other tests, other sessions); instead every node runs
with `--block` in its own process group, and teardown (or a test that kills a node) signals that
group only: the raylet and every worker process it started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kale_ray.ray_utils import free_port


@dataclass
class Head:
    gcs_address: str
    dashboard_url: str
    env: dict[str, str]
    process: subprocess.Popen


def _agent_ports() -> list[str]:
    """Ray's agents default to fixed ports that another local cluster (the session's ray_local, a
    developer's, another node of this one) may hold; a clash leaves the job agent without HTTP."""
    return [f"--{name}={free_port()}" for name in (
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
        "runtime-env-agent-port", "node-manager-port", "object-manager-port")]


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the node's process group, SIGKILL to what is left after 30 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def ray_bin() -> str:
    return str(Path(os.sys.executable).with_name("ray"))


@contextlib.contextmanager
def local_head(num_cpus: int = 2, extra_args: list[str] | None = None,
               env: dict[str, str] | None = None, timeout_s: float = 120,
               port: int | None = None) -> Iterator[Head]:
    port, dash = port or free_port(), free_port()
    temp_dir = tempfile.mkdtemp(prefix="kr-", dir="/tmp")  # short: Ray's unix sockets cap path length
    venv_bin = str(Path(os.sys.executable).parent)  # jobs' `python` must be the project's
    full_env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
                "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}", **(env or {})}
    full_env.pop("RAY_ADDRESS", None)
    cmd = [ray_bin(), "start", "--head", "--block", f"--port={port}", f"--num-cpus={num_cpus}",
           "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
           "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}", "--object-store-memory=500000000",
           *_agent_ports(), f"--ray-client-server-port={free_port()}", *(extra_args or [])]
    log = open(Path(temp_dir) / "head.log", "w")  # noqa: SIM115 (closed in finally)
    proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    head = Head(f"127.0.0.1:{port}", f"http://127.0.0.1:{dash}", full_env, proc)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{head.dashboard_url}/api/version", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log_text = (Path(temp_dir) / 'head.log').read_text()
                    raise RuntimeError(f"ray head did not come up: {log_text}") from None
                time.sleep(1)
        yield head
    finally:
        _stop(proc)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


@dataclass
class WorkerNode:
    node_id: str
    process: subprocess.Popen
    temp_dir: str

    def kill(self) -> None:
        """The node dies at once, as a lost machine does: its raylet and every worker process."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


def cluster_nodes(head: Head) -> list[dict]:
    """Ray's state API over the dashboard: every node, alive or dead, with its resources."""
    import json

    with urllib.request.urlopen(f"{head.dashboard_url}/api/v0/nodes?limit=100&detail=1", timeout=10) as reply:
        return json.loads(reply.read())["data"]["result"]["result"]


@contextlib.contextmanager
def worker_node(head: Head, num_cpus: int, num_gpus: int = 0, timeout_s: float = 120) -> Iterator[WorkerNode]:
    """A node joining `head`: `num_gpus` are advertised to Ray's scheduler only (this machine has none)."""
    deadline = time.monotonic() + timeout_s
    while not any("node:__internal_head__" in n.get("resources_total", {}) for n in cluster_nodes(head)):
        if time.monotonic() > deadline:  # the state API lists the head a moment after the dashboard answers
            raise RuntimeError("the head node never appeared in Ray's node list")
        time.sleep(0.5)
    known = {n["node_id"] for n in cluster_nodes(head)}
    temp_dir = tempfile.mkdtemp(prefix="kw-", dir="/tmp")
    cmd = [ray_bin(), "start", f"--address={head.gcs_address}", "--block", f"--num-cpus={num_cpus}",
           f"--num-gpus={num_gpus}", "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}",
           "--object-store-memory=300000000", *_agent_ports()]
    log = open(Path(temp_dir) / "node.log", "w")  # noqa: SIM115 (closed in finally)
    proc = subprocess.Popen(cmd, env=head.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while True:
            new = [n for n in cluster_nodes(head) if n["node_id"] not in known and n["state"] == "ALIVE"]
            if new:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker node did not join: {(Path(temp_dir) / 'node.log').read_text()}")
            time.sleep(1)
        yield WorkerNode(new[0]["node_id"], proc, temp_dir)
    finally:
        _stop(proc)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
