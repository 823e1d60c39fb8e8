"""A real `ray start --head` cluster for tests, stopped without touching anyone else's Ray.

`ray stop` kills every Ray process of the user (other tests, other sessions); instead the head runs
with `--block` in its own process group, and teardown signals that group only.
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
           # Ray's agents default to fixed ports that another local cluster (the session's ray_local,
           # a developer's) may hold; a clash leaves the job agent without HTTP and submits fail.
           *(f"--{name}={free_port()}" for name in (
               "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
               "runtime-env-agent-port", "ray-client-server-port", "node-manager-port", "object-manager-port")),
           *(extra_args or [])]
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
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
