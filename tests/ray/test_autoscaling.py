"""Local autoscaling simulation (docs/cluster.md): a GPU-demanding task makes a fake GPU node appear, and
the idle node goes away again. Fake nodes are real raylets on this machine; slow, so marked."""

import json
import subprocess
import sys
import textwrap

import pytest

from kale_ray.ray_utils import free_port
from tests.ray.local_head import local_head

pytestmark = pytest.mark.slow

FAKE_CLUSTER = {
    "cluster_name": "kale-fake",
    "max_workers": 2,
    "upscaling_speed": 1.0,
    "idle_timeout_minutes": 0.25,
    "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                 "disable_launch_config_check": True},
    "auth": {"ssh_user": "ubuntu"},
    "available_node_types": {
        "ray.head.default": {"resources": {"CPU": 1}, "node_config": {}, "max_workers": 0},
        "gpu_node": {"resources": {"CPU": 1, "GPU": 1}, "node_config": {}, "min_workers": 0,
                     "max_workers": 1},
    },
    "head_node_type": "ray.head.default",
    "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
    "rsync_exclude": [], "rsync_filter": [], "initialization_commands": [], "setup_commands": [],
    "head_setup_commands": [], "worker_setup_commands": [], "head_start_ray_commands": [],
    "worker_start_ray_commands": [],
}

DRIVER = textwrap.dedent("""
    import sys, time, ray
    ray.init(address=sys.argv[1])
    def gpu_nodes():
        return [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU")]
    assert not gpu_nodes(), "no GPU node before the demand"

    @ray.remote(num_gpus=1)
    def on_gpu():
        import ray
        return ray.get_gpu_ids()
    print("gpu ids", ray.get(on_gpu.remote(), timeout=240), flush=True)
    print("gpu nodes after demand", len(gpu_nodes()), flush=True)
    deadline = time.time() + 240
    while gpu_nodes() and time.time() < deadline:
        time.sleep(5)
    print("gpu nodes after idle", len(gpu_nodes()), flush=True)
""")


def test_gpu_demand_scales_up_and_idle_scales_down(tmp_path):
    port = free_port()
    fake = {**FAKE_CLUSTER, "provider": {**FAKE_CLUSTER["provider"], "gcs_address": f"127.0.0.1:{port}"}}
    config = tmp_path / "fake.yaml"
    config.write_text(json.dumps(fake))
    env = {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    with local_head(num_cpus=1, extra_args=[f"--autoscaling-config={config}"], env=env, port=port) as head:
        out = subprocess.run([sys.executable, "-c", DRIVER, head.gcs_address], env=head.env,
                             capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "gpu nodes after demand 1" in out.stdout
    assert "gpu nodes after idle 0" in out.stdout
