"""Build the Serve application from the config: one ModelServer deployment per base model (replicas
or autoscaling from `serve`), behind one OpenAI-compatible ingress. `serve/app.py` and
`kale-ray serve` both go through `build_app`."""

from __future__ import annotations

import ipaddress
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


def served_name(cfg: Any, base: str, adapter: str | None = None) -> str:
    """The `model` value that selects `adapter` of `base` (or `base` itself): the adapter's own name
    with the hf backend, Ray's `<base>:<adapter>` with the vllm backend (kale_ray.serving.ray_llm)."""
    if adapter is None:
        return base
    return f"{base}:{adapter}" if cfg.serve.backend == "vllm" else adapter


def served_names(cfg: Any) -> list[str]:
    """Every `model` value the app answers, bases and adapters."""
    return [served_name(cfg, m["name"], a) for m in served_models(cfg) for a in [None, *m["adapters"]]]


def ready_path(cfg: Any) -> str:
    """What answers 200 once the app serves: kale-ray's `/ready`, or Ray's `/v1/models` (serve.run has
    then already waited for every engine)."""
    return "/v1/models" if cfg.serve.backend == "vllm" else "/ready"


LOOPBACK_NAMES = {"localhost", "ip6-localhost", "ip6-loopback"}


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a hostname: it may resolve to anything
        return False


def check_exposure(cfg: Any, host: str | None = None) -> None:
    """Refuse to serve on a non-loopback address without an API key, unless the config says so."""
    s = cfg.serve
    host = s.host if host is None else host
    if is_loopback(host) or s.api_key_file or s.api_key_env or s.allow_unauthenticated:
        return
    raise ConfigError(f"serve: refusing to serve on {host!r} (not a loopback address) without an API key: set "
                      "serve.api_key_file (a secret file on every node) or serve.api_key_env (a variable set on "
                      "every node), or serve.allow_unauthenticated=true to expose it to anyone who can reach it")


def check_fits(cfg: Any, n_models: int) -> None:
    """Every replica (`serve.replicas` of each of `n_models` models) and the ingress must fit the
    cluster's CPUs and GPUs at once, or `serve.run` waits for resources that never come. A cluster kale-ray
    started itself has a fixed size: refuse up front, saying what fits. A cluster joined by address may
    autoscale: warn only."""
    import ray

    from kale_ray.ray_utils import cluster_address

    s = cfg.serve
    need = {"CPU": n_models * s.replicas * s.replica_cpus + s.ingress_cpus, "GPU": n_models * s.replicas * s.replica_gpus}
    have = ray.cluster_resources()
    short = [f"{need[k]:g} {k}s (the cluster has {have.get(k, 0):g})" for k in need if need[k] > have.get(k, 0) + 1e-9]
    if not short:
        return
    message = (f"serve: {n_models} model(s) x serve.replicas={s.replicas} replica(s) of serve.replica_cpus="
               f"{s.replica_cpus:g} / serve.replica_gpus={s.replica_gpus:g}, plus the ingress, need "
               f"{' and '.join(short)}: lower serve.replicas or the per-replica resources")
    if cluster_address(cfg.ray):
        print(f"{message}; waiting in case the cluster scales up", flush=True)
        return
    raise ConfigError(message)


def bound_host(cfg: Any) -> str:
    """The address Serve's HTTP proxy binds: the running Serve instance's (`serve run config.yaml`
    sets its own http_options), else serve.host."""
    import ray

    client = None
    if ray.is_initialized():  # (asking Serve otherwise would start a Ray instance)
        try:
            from ray.serve.context import _get_global_client

            client = _get_global_client(raise_if_no_controller_running=False)
        except Exception:  # noqa: BLE001 (no Serve instance: the config is all there is)
            client = None
    host = getattr(getattr(client, "http_config", None), "host", None)
    return str(host) if host else cfg.serve.host


def settings(cfg: Any) -> dict[str, Any]:
    """What replicas need, the API key excepted: they read it themselves (see `read_api_key`)."""
    s = cfg.serve
    return {"backend": s.backend, "dtype": cfg.model.dtype, "device": s.device, "api_key_env": s.api_key_env,
            "api_key_file": s.api_key_file, "max_request_bytes": s.max_request_bytes, "max_queued": s.max_queued,
            "retry_after_s": s.retry_after_s, "max_prompts": s.max_prompts,
            "default_max_tokens": s.default_max_tokens, "max_request_tokens": s.max_request_tokens,
            "request_timeout_s": s.request_timeout_s, "body_timeout_s": s.body_timeout_s,
            "max_response_bytes": s.max_response_bytes}


def deployment_options(cfg: Any, name: str) -> dict[str, Any]:
    s = cfg.serve
    options: dict[str, Any] = {
        "name": f"model-{name}",
        "ray_actor_options": {"num_cpus": s.replica_cpus, "num_gpus": s.replica_gpus},
        # Let overflow reach the replica, which refuses it fast (503) rather than queueing it unseen.
        "max_ongoing_requests": s.max_queued + 8,
        "max_queued_requests": s.max_queued,
        "health_check_period_s": s.health_check_period_s,
        "health_check_timeout_s": s.health_check_timeout_s,
        "graceful_shutdown_timeout_s": s.graceful_shutdown_timeout_s,
    }
    if s.max_replicas:
        options["autoscaling_config"] = {"min_replicas": s.replicas, "max_replicas": max(s.max_replicas, s.replicas),
                                         "target_ongoing_requests": s.target_ongoing_requests}
    else:
        options["num_replicas"] = s.replicas
    return options


def build_app(cfg: Any) -> Any:  # -> ray.serve.Application
    """kale-ray's own OpenAI app over hf engines, or (serve.backend=vllm) Ray's `ray.serve.llm` app."""
    check_exposure(cfg, bound_host(cfg))
    models = served_models(cfg)
    if cfg.serve.backend == "vllm":
        from kale_ray.serving.ray_llm import build_vllm_app

        return build_vllm_app(cfg, models)
    from kale_ray.serving.deployments import ModelServer, OpenAIIngress

    common = settings(cfg)
    handles = {m["name"]: ModelServer.options(**deployment_options(cfg, m["name"])).bind(m, common)
               for m in models}
    routes = {name: m["name"] for m in models for name in [m["name"], *m["adapters"]]}
    actor: dict[str, Any] = {"num_cpus": cfg.serve.ingress_cpus}
    return OpenAIIngress.options(ray_actor_options=actor,
                                 max_ongoing_requests=10_000).bind(handles, routes, common)


def run_server(cfg: Any, blocking: bool = True) -> str:
    """Start Serve on serve.host:serve.port (127.0.0.1 by default) and deploy the app; returns the
    API's base URL. Blocks until interrupted when `blocking`."""
    import time

    from ray import serve

    from kale_ray.ray_utils import init_ray

    check_exposure(cfg)  # before anything binds
    init_ray(cfg.ray)
    check_fits(cfg, len(served_models(cfg)))
    serve.start(http_options={"host": cfg.serve.host, "port": cfg.serve.port})
    serve.run(build_app(cfg), name=cfg.serve.app_name, route_prefix=cfg.serve.route_prefix)
    prefix = cfg.serve.route_prefix.rstrip("/")
    url = f"http://{cfg.serve.host}:{cfg.serve.port}{prefix}/v1"
    print(f"serve: OpenAI-compatible API at {url} (models: {', '.join(served_names(cfg))})", flush=True)
    if blocking:
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            serve.delete(cfg.serve.app_name)
    return url
