"""cluster.yaml checked offline with Ray's own schema (prepare, then validate): no credentials needed."""

import copy
import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _validate(config: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster-gcp.yaml"])
def test_cluster_yaml_is_valid_and_shaped_as_designed(name):
    cluster = yaml.safe_load((REPO / name).read_text())
    prepared = _validate(cluster)
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    assert head["resources"]["CPU"] == 0, "the head must run no tasks"
    gpu = [t for t in types.values() if t["resources"].get("GPU", 0) >= 8]
    cpu = [t for t in types.values() if t["resources"].get("CPU", 0) > 0 and not t["resources"].get("GPU")]
    assert gpu and all(t["min_workers"] == 0 for t in gpu)
    assert cpu and all(t["min_workers"] == 0 and t["max_workers"] > 0 for t in cpu)
    setup = " ".join(prepared["setup_commands"])
    assert "scripts/install.sh" in setup and "gpu" in setup
    scheme = "gs" if prepared["provider"]["type"] == "gcp" else "s3"
    assert f"export KALE_WORKDIR={scheme}://" in setup, "every node names the shared store for the jobs"


def test_the_gpu_config_writes_where_the_cluster_says(monkeypatch):
    from kale_ray.config import load_config
    from kale_ray.storage import MIRRORS_ENV, remote_location

    monkeypatch.setenv(MIRRORS_ENV, os.environ.get(MIRRORS_ENV, ""))  # the mirror this registers goes after
    monkeypatch.setenv("KALE_WORKDIR", "s3://my-bucket/kale-ray")
    cfg = load_config(REPO / "configs" / "gpu.yaml")
    assert cfg.workdir == "s3://my-bucket/kale-ray"
    assert remote_location(cfg.stage_dir("synth")) == "s3://my-bucket/kale-ray/gpu/synth"


def test_schema_rejects_a_typo(cluster):
    from jsonschema.exceptions import ValidationError

    broken = copy.deepcopy(cluster)
    broken["available_node_types"]["gpu_8x"]["max_worker"] = 4
    with pytest.raises(ValidationError, match="max_worker"):
        _validate(broken)


@pytest.mark.parametrize("name", ["config.yaml", "cluster.yaml"])
def test_serve_configs_are_valid_serve_deploy_files(name):
    """Ray's own schema of `serve deploy` files, and the cluster variant imports the app from where the
    cluster files mount the project on every node."""
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(yaml.safe_load((REPO / "serve" / name).read_text()))
    (app,) = config.applications
    assert app.import_path == "serve.app:build"
    if name == "cluster.yaml":
        mounts = [yaml.safe_load((REPO / c).read_text())["file_mounts"] for c in ("cluster.yaml", "cluster-gcp.yaml")]
        project = {target for m in mounts for target, source in m.items() if source == "."}
        assert app.runtime_env["env_vars"]["PYTHONPATH"] in project
        assert "working_dir" not in app.runtime_env  # serve deploy cannot upload a local folder
        assert any(o.startswith("serve.api_key_file=") for o in app.args["overrides"])
