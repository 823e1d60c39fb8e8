"""Faults while serving, on the real app over HTTP: an engine that fails inside a live replica, and
requests in flight while the deployment scales down. In both the scorer's results equal an
undisturbed run's, and no client sees a 5xx other than a retryable 503."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest
import requests

from kale_ray.config import load_config
from kale_ray.data.format import answer_text, prompt_text
from kale_ray.eval.scorers import APIScorer
from kale_ray.ray_utils import free_port
from tests.ray.serve_helpers import running_app

pytestmark = pytest.mark.ray

QUESTIONS = {"Which gas do plants take in to make food?": ["carbon dioxide", "oxygen", "helium", "neon"],
             "What is the capital of France?": ["Paris", "Lyon", "Nice"],
             "Which planet is known as the red planet?": ["Mars", "Venus", "Jupiter", "Saturn"]}
PAIRS = [(prompt_text(q), answer_text(o)) for q, opts in QUESTIONS.items() for o in opts]


def _cfg(smollm2_path, *extra: str):  # noqa: ANN001, ANN202
    models = json.dumps([{"name": "base", "path": str(smollm2_path), "adapters": {}}])
    return load_config(None, [f"serve.models={models}", f"serve.port={free_port()}", "serve.ingress_cpus=0.05",
                              *extra])


def _replicas(base: str) -> dict:
    return requests.get(f"{base}/ready", timeout=30).json()["models"]["base"]


def _break_engine(replica) -> int:  # noqa: ANN001 - runs inside the replica's process (ReplicaActor)
    """What a dead device does to an engine: every forward raises from now on."""
    from ray import serve

    server = serve.get_replica_context().servable_object

    def dead(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    server.engine.engine.model.forward = dead
    return os.getpid()


def _replica_actors(app: str) -> list:
    import ray

    return [ray.get_actor(a["name"], namespace=a["namespace"]) for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(f"SERVE_REPLICA::{app}#model-base#")]


def test_a_replica_whose_engine_failed_is_replaced_and_scoring_is_unchanged(ray_local, smollm2_path) -> None:
    import ray

    cfg = _cfg(smollm2_path, "serve.replica_cpus=0.5", "serve.health_check_period_s=2",
               "serve.health_check_timeout_s=20")
    with running_app(cfg, "enginefault") as base:
        scorer = APIScorer(f"{base}/v1#base", concurrency=2, timeout_s=120, busy_wait_s=240, prompts_per_request=4)
        before = scorer.loglikelihood(PAIRS)
        (actor,) = _replica_actors("enginefault")
        old_pid = ray.get(actor.__ray_call__.remote(_break_engine))

        body = {"model": "base", "prompt": PAIRS[0][0] + PAIRS[0][1], "max_tokens": 0, "echo": True, "logprobs": 0}
        failed = requests.post(f"{base}/v1/completions", json=body, timeout=60)
        assert failed.status_code == 503 and failed.headers.get("Retry-After")  # retryable, never a 500
        assert failed.json()["error"]["code"] in {"engine_failed", "replica_unavailable"}

        after = scorer.loglikelihood(PAIRS)  # waits out the replacement
        scorer.close()
        assert after == pytest.approx(before, abs=1e-4)
        info = _replicas(base)
        assert info["pid"] != old_pid and info["failure"] is None  # a new replica with a working engine


def test_requests_in_flight_during_a_scale_down_finish_or_get_a_retryable_503(ray_local, smollm2_path) -> None:
    """Two replicas, then the app redeployed with one while requests stream in: every raw request
    answers 200 or 503 with Retry-After, and the scorer (which retries) gets every score right."""
    from ray import serve

    from kale_ray.serving.app import build_app

    cfg = _cfg(smollm2_path, "serve.replicas=2", "serve.replica_cpus=0.5", "serve.graceful_shutdown_timeout_s=5")
    with running_app(cfg, "scaledown") as base:
        reference = APIScorer(f"{base}/v1#base", concurrency=1)
        want = reference.loglikelihood(PAIRS)
        reference.close()
        statuses: list[tuple[int, str | None]] = []
        stop = threading.Event()

        def raw_client() -> None:
            session = requests.Session()
            while not stop.is_set():
                for ctx, cont in PAIRS[:4]:
                    body = {"model": "base", "prompt": ctx + cont, "max_tokens": 0, "echo": True, "logprobs": 0}
                    resp = session.post(f"{base}/v1/completions", json=body, timeout=120)
                    statuses.append((resp.status_code, resp.headers.get("Retry-After")))

        clients = [threading.Thread(target=raw_client, daemon=True) for _ in range(3)]
        for c in clients:
            c.start()
        scorer = APIScorer(f"{base}/v1#base", concurrency=3, timeout_s=120, busy_wait_s=240, prompts_per_request=4)
        results: list[list[float]] = []
        scoring = threading.Thread(target=lambda: results.extend(scorer.loglikelihood(PAIRS) for _ in range(3)))
        scoring.start()
        time.sleep(2)
        one = cfg.model_copy(update={"serve": cfg.serve.model_copy(update={"replicas": 1})})
        serve.run(build_app(one), name="scaledown", route_prefix="/scaledown")  # returns once scaled down
        scoring.join(600)
        stop.set()
        for c in clients:
            c.join(120)
        scorer.close()
        assert len(results) == 3 and all(r == pytest.approx(want, abs=1e-4) for r in results)
        assert statuses and all(code == 200 or (code == 503 and retry) for code, retry in statuses), \
            sorted({code for code, _ in statuses})
        assert serve.status().applications["scaledown"].deployments["model-base"].replica_states.get("RUNNING") == 1
