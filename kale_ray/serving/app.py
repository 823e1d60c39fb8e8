"""Build the Serve application from the config: one ModelServer deployment per base model (replicas
or autoscaling from `serve`), behind one OpenAI-compatible ingress. `serve/app.py` and
`kale-ray serve` both go through `build_app`."""

from __future__ import annotations

import os
from typing import Any

from kale_ray.config import ConfigError


def served_models(cfg: Any) -> list[dict[str, Any]]:  # cfg: KaleConfig
    models = [m.model_dump() for m in cfg.serve.models] or [
        {"name": cfg.model.name_or_path.rstrip("/").split("/")[-1], "path": cfg.model.name_or_path,
         "adapters": {}}]
    names: list[str] = []
    for m in models:
        names += [m["name"], *m["adapters"]]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"serve.models: model names must be unique across bases and adapters: {dupes}")
    return models


def settings(cfg: Any) -> dict[str, Any]:
    s = cfg.serve
    return {"backend": s.backend, "dtype": cfg.model.dtype, "device": s.device, "api_key_env": s.api_key_env,
            "max_request_bytes": s.max_request_bytes, "max_queued": s.max_queued,
            "retry_after_s": s.retry_after_s, "max_prompts": s.max_prompts,
            "default_max_tokens": s.default_max_tokens, "vllm_engine_kwargs": dict(s.vllm_engine_kwargs)}


def deployment_options(cfg: Any, name: str) -> dict[str, Any]:
    s = cfg.serve
    options: dict[str, Any] = {
        "name": f"model-{name}",
        "ray_actor_options": {"num_cpus": s.replica_cpus, "num_gpus": s.replica_gpus},
        # Let overflow reach the replica, which refuses it fast (503) rather than queueing it unseen.
        "max_ongoing_requests": s.max_queued + 8,
        "max_queued_requests": s.max_queued,
    }
    if s.max_replicas:
        options["autoscaling_config"] = {"min_replicas": s.replicas, "max_replicas": max(s.max_replicas, s.replicas),
                                         "target_ongoing_requests": s.target_ongoing_requests}
    else:
        options["num_replicas"] = s.replicas
    return options


def build_app(cfg: Any) -> Any:  # -> ray.serve.Application
    from kale_ray.serving.deployments import ModelServer, OpenAIIngress

    models = served_models(cfg)
    common = settings(cfg)
    handles = {m["name"]: ModelServer.options(**deployment_options(cfg, m["name"])).bind(m, common)
               for m in models}
    routes = {name: m["name"] for m in models for name in [m["name"], *m["adapters"]]}
    actor: dict[str, Any] = {"num_cpus": cfg.serve.ingress_cpus}
    env = cfg.serve.api_key_env
    if env and os.environ.get(env):  # the key travels to the ingress replica in its environment
        actor["runtime_env"] = {"env_vars": {env: os.environ[env]}}
    return OpenAIIngress.options(ray_actor_options=actor,
                                 max_ongoing_requests=10_000).bind(handles, routes, common)


def run_server(cfg: Any, blocking: bool = True) -> str:
    """Start Serve on serve.host:serve.port (127.0.0.1 by default) and deploy the app; returns the
    API's base URL. Blocks until interrupted when `blocking`."""
    import time

    from ray import serve

    from kale_ray.ray_utils import init_ray

    init_ray(cfg.ray)
    serve.start(http_options={"host": cfg.serve.host, "port": cfg.serve.port})
    serve.run(build_app(cfg), name=cfg.serve.app_name, route_prefix=cfg.serve.route_prefix)
    prefix = cfg.serve.route_prefix.rstrip("/")
    url = f"http://{cfg.serve.host}:{cfg.serve.port}{prefix}/v1"
    print(f"serve: OpenAI-compatible API at {url} (models: "
          f"{', '.join(n for m in served_models(cfg) for n in [m['name'], *m['adapters']])})", flush=True)
    if blocking:
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            serve.delete(cfg.serve.app_name)
    return url
