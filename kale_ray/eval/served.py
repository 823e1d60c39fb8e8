"""The eval stage's models on Ray Serve: one app for the run, scored through its OpenAI API.

Every LoRA-trained method is an adapter on the one base deployment (the engine's own multi-adapter
support: the base is loaded once per replica), so Vanilla and all adapters share replicas; a fully
fine-tuned method gets a deployment of its own. Replicas and their CPUs/GPUs come from `serve.*`, so on
a cluster the stage runs on the GPU pool and the driver loads no model. The app lives on 127.0.0.1 for
the stage only and is deleted after, also when scoring fails.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kale_ray import storage
from kale_ray.eval.scorers import is_served

BASE_NAME = "base"


def adapter_dir(spec: str) -> Path | None:
    """A training run's LoRA adapter: `<run>/adapter` beside the `<run>/final` the pipeline names."""
    path = Path(spec)
    for candidate in (path, path.parent / "adapter"):
        storage.fetch(candidate / "adapter_config.json")  # an object-store workdir: this file only
        if (candidate / "adapter_config.json").is_file():
            return candidate
    return None


def served_layout(base: str, models: dict[str, str], aliases: frozenset[str] = frozenset()) -> tuple[
        list[dict[str, Any]], dict[str, str]]:
    """(serve.models, method -> served model name) for the methods whose spec is a path or a name.
    `base` is the checkpoint every adapter was trained on; a method whose spec is `base` (or one of its
    `aliases`: the registered name it was prepared from) is the base."""
    base_entry: dict[str, Any] = {"name": BASE_NAME, "path": base, "adapters": {}}
    entries = [base_entry]
    names: dict[str, str] = {}
    for method, spec in models.items():
        if is_served(spec):
            continue
        adapter = adapter_dir(spec)
        if spec == base or spec in aliases:
            names[method] = BASE_NAME
        elif adapter is not None:
            names[method] = method
            base_entry["adapters"][method] = str(adapter)
        else:  # a full fine-tune: its own deployment
            names[method] = f"full-{method}"
            entries.append({"name": names[method], "path": spec, "adapters": {}})
    if BASE_NAME not in names.values() and not base_entry["adapters"]:
        entries.remove(base_entry)
    return entries, names


def stage_adapters_in_store(entries: list[dict[str, Any]], staging: Path) -> list[dict[str, Any]]:
    """The vllm backend (Ray's LLM serving) loads adapters from object storage only, as `<prefix>/<name>`:
    adapters that live in an object-store workdir are copied, published, to `<staging>/<name>` there
    and named by their URI. Others are left as they are (a URI already; a local directory, which Ray's
    serving refuses with a clear error)."""
    import shutil

    staged = []
    for entry in entries:
        adapters = dict(entry["adapters"])
        for name, path in adapters.items():
            if storage.is_uri(path) or storage.remote_location(path) is None:
                continue
            target = staging / entry["name"] / name
            storage.fetch(path)
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(path, target)
            storage.publish(target)
            adapters[name] = storage.remote_location(target)
        staged.append({**entry, "adapters": adapters})
    return staged


def _serve_http() -> tuple[str, bool]:
    """The HTTP address of the Serve instance, and whether this call started it: a running instance is
    reused, else one starts on 127.0.0.1 and a free port (the stage's app is not for other clients, and
    `serve.port` may be taken by the user's own app)."""
    from ray import serve
    from ray.serve.context import _get_global_client

    from kale_ray.ray_utils import free_port

    started = _get_global_client(raise_if_no_controller_running=False) is None
    if started:
        serve.start(http_options={"host": "127.0.0.1", "port": free_port()}, logging_config=_logging())
    http = _get_global_client().http_config
    host = "127.0.0.1" if http.host in ("0.0.0.0", "::", "") else http.host
    return f"http://{host}:{http.port}", started


def _logging() -> dict[str, Any]:
    """Serve's controller, proxy and replicas log every replica start and request at INFO: warnings only,
    unless --verbose."""
    from kale_ray.env import verbose

    return {"log_level": "INFO" if verbose() else "WARNING", "enable_access_log": verbose()}


def replica_nodes(app_name: str) -> list[str]:
    """The nodes of an app's live replicas, from Ray's state API (the dashboard's); [] where a cluster
    runs without one."""
    try:
        from ray.util.state import list_actors

        actors = list_actors(filters=[("state", "=", "ALIVE")], limit=10_000, raise_on_missing_output=False)
    except Exception:  # no dashboard (a local cluster started with include_dashboard=false)
        return []
    return sorted({a.node_id for a in actors if (a.class_name or "").startswith(f"ServeReplica:{app_name}:")})


@contextmanager
def serving(cfg: Any, models: dict[str, str]) -> Iterator[tuple[dict[str, str], list[str]]]:  # cfg: KaleConfig
    """Deploy `models` (method -> path or name) and yield method -> `http://.../v1#name` for each (specs
    that are URLs pass through unchanged), and the nodes of the app's replicas."""
    import requests
    from ray import serve

    from kale_ray.config.serve import ServedModel
    from kale_ray.engines.registry import resolve_model_in_task
    from kale_ray.ray_utils import init_ray
    from kale_ray.serving.app import build_app, check_fits, ready_path, served_name

    init_ray(cfg.ray)
    base = resolve_model_in_task(cfg.model.name_or_path, cfg.model.cache_dir, cfg.models_dir)  # the pipeline's model stage prepared it
    entries, names = served_layout(base, models, frozenset({cfg.model.name_or_path}))
    if not entries:
        yield dict(models), []
        return
    check_fits(cfg, len(entries))
    if cfg.serve.backend == "vllm":
        entries = stage_adapters_in_store(entries, cfg.stage_dir("serve-adapters"))
    tag = hashlib.sha256(repr(entries).encode()).hexdigest()[:8]
    app_name = f"{cfg.serve.app_name}-eval-{tag}"
    app_cfg = cfg.model_copy(update={"serve": cfg.serve.model_copy(update={
        "models": [ServedModel(**entry) for entry in entries], "app_name": app_name, "route_prefix": f"/{app_name}", "host": "127.0.0.1",
        "api_key_env": None})})
    address, started = _serve_http()
    print(f"eval: deploying {len(entries)} model(s) with {sum(len(e['adapters']) for e in entries)} adapter(s) "
          f"on Ray Serve ({cfg.serve.replicas} replica(s), {cfg.serve.replica_cpus} CPU, "
          f"{cfg.serve.replica_gpus} GPU each)", flush=True)
    start = time.monotonic()
    try:
        serve.run(build_app(app_cfg), name=app_name, route_prefix=f"/{app_name}", logging_config=_logging())
        base_url = f"{address}/{app_name}"
        deadline = time.monotonic() + cfg.eval.request_timeout_s
        while requests.get(f"{base_url}{ready_path(cfg)}", timeout=30).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"eval: the Serve app {app_name} did not become ready")
            time.sleep(1)
        print(f"eval: Serve app {app_name} ready in {time.monotonic() - start:.0f}s at {base_url}/v1", flush=True)
        # An adapter is selected as `<base>:<adapter>` on the vllm backend (Ray's LLM serving).
        served = {method: served_name(cfg, BASE_NAME, name) if name in entries[0]["adapters"] else name
                  for method, name in names.items()}
        yield ({method: f"{base_url}/v1#{served[method]}" if method in names else spec
                for method, spec in models.items()}, replica_nodes(app_name))
    finally:
        serve.delete(app_name)
        if started:
            serve.shutdown()
