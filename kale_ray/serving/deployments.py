"""The Serve deployments: one `ModelServer` per base checkpoint (its LoRA adapters inside it) and an
HTTP ingress (FastAPI) that authenticates, limits, validates and routes by the `model` field.

Every failure a client can cause ends as a 4xx with an OpenAI error body; the replica keeps serving.
A bounded queue per replica turns overload into 503 + Retry-After instead of unbounded latency, and
a request's cost is bounded three ways: its token budget (400), its compute wall time (408) and its
response size (400); a client that disconnects stops its work. docs/stages/serve.md lists the rules.
"""

import asyncio
import functools
import hmac
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from kale_ray.serving.batching import BatchedEngine
from kale_ray.serving.control import Cancelled, RequestControl, TimedOut, install_checkpoints, run_controlled
from kale_ray.serving.openai_api import (
    ApiError,
    ChatRequest,
    CompletionRequest,
    Limits,
    chat_completion,
    completion,
    error_body,
    parse_body,
    validate,
    validation_error,
)


def load_engine(path: str, adapters: dict[str, str], dtype: str, device: str) -> Any:
    """The replica's hf engine; `path` may be a registered name (prepared on first use). (The vllm
    backend is Ray's own LLM serving: kale_ray.serving.ray_llm.)"""
    from kale_ray.engines.hf import HFEngine

    return HFEngine(path, adapters=adapters, dtype=dtype, device=device)


def read_api_key(settings: dict[str, Any]) -> str | None:
    """The bearer key from `serve.api_key_file` or `serve.api_key_env`, read where the ingress runs:
    the key itself never travels through Ray (no runtime_env, no init argument, no log)."""
    path, env = settings.get("api_key_file"), settings.get("api_key_env")
    if path:
        try:
            key = open(path, encoding="utf-8").read().strip()  # noqa: SIM115 (read once)
        except OSError as err:
            raise RuntimeError(f"serve.api_key_file={path} cannot be read on this node: {err.strerror}") from None
        if not key:
            raise RuntimeError(f"serve.api_key_file={path} is empty")
        return key
    if env:
        key = os.environ.get(env, "").strip()
        if not key:
            raise RuntimeError(f"serve.api_key_env={env} but that variable is empty in the replica's environment "
                               "(set it on every Ray node, or use serve.api_key_file)")
        return key
    return None


@serve.deployment
class ModelServer:
    """One base model and its adapters. Calls run in worker threads, concurrent ones batched together
    (kale_ray.serving.batching); at most `max_queued` more wait, the rest are refused at once (the
    ingress answers 503). Each call runs under a `RequestControl`: a cancelled call (client gone) or
    one past `request_timeout_s` stops at the engine's next forward pass."""

    def __init__(self, model: dict[str, Any], settings: dict[str, Any]) -> None:
        self.name = model["name"]
        self.adapters = dict(model.get("adapters") or {})
        self.settings = settings
        self.limits = Limits(settings["default_max_tokens"], settings["max_prompts"],
                             settings["max_request_tokens"])
        engine = load_engine(model["path"], self.adapters, settings["dtype"], settings["device"])
        self.interruptible = install_checkpoints(engine)
        self.engine = BatchedEngine(engine)
        self.counts = {"in_flight": 0, "served": 0, "cancelled": 0, "timed_out": 0, "engine_failed": 0}
        self.failure: str | None = None  # set once the engine fails: the health check then fails
        # A thread per admitted request (asyncio's default pool has cores + 4): they wait in the batcher,
        # so every request queued on this replica can join the next batch.
        self.threads = ThreadPoolExecutor(max_workers=settings["max_queued"] + 8, thread_name_prefix="kale-engine")

    def _adapter(self, model: str) -> str | None:
        return None if model == self.name else model

    def _finished(self, work: asyncio.Future) -> None:
        """When the engine call really ends (after a cancelled caller too)."""
        self.counts["in_flight"] -= 1
        err = None if work.cancelled() else work.exception()
        kind = {Cancelled: "cancelled", TimedOut: "timed_out"}.get(type(err), "served")
        self.counts[kind] += 1

    async def _run(self, fn: Any, *args: Any) -> dict[str, Any]:
        if self.failure is not None:
            return self._engine_failed()
        if self.counts["in_flight"] - 1 >= self.settings["max_queued"]:
            return {"status": 503, "body": error_body(503, "the model's request queue is full; retry later",
                                                      "server_overloaded", code="queue_full")}
        control = RequestControl(self.settings["request_timeout_s"])
        self.counts["in_flight"] += 1
        call = functools.partial(run_controlled, control, fn, *args)
        work = asyncio.ensure_future(asyncio.get_running_loop().run_in_executor(self.threads, call))
        work.add_done_callback(self._finished)
        try:
            body = await asyncio.shield(work)
        except asyncio.CancelledError:  # the client disconnected (Serve cancels the call)
            control.cancel()
            raise
        except ApiError as err:
            return {"status": err.status, "body": err.body()}
        except TimedOut as err:
            return {"status": 408, "body": error_body(408, f"{err}; ask for fewer tokens or prompts",
                                                      code="request_timeout")}
        except Cancelled:  # stopped for a client that has gone: nobody reads this
            return {"status": 408, "body": error_body(408, "the request was cancelled", code="cancelled")}
        except KeyError as err:  # an adapter this replica does not hold
            return {"status": 404, "body": error_body(404, f"no adapter {err} on this replica", code="model_not_found")}
        except (ValueError, OverflowError, IndexError) as err:
            # The engine refused what the schema let through: the request's fault, said plainly.
            return {"status": 400, "body": error_body(400, f"the engine cannot serve this request: "
                                                      f"{type(err).__name__}: {err}", code="engine_refused")}
        except Exception as err:  # noqa: BLE001 - the engine itself failed (a device error, a dead vLLM core)
            self.failure = f"{type(err).__name__}: {err}"[:500]
            print(f"serve: the engine of {self.name} failed ({self.failure}); this replica reports unhealthy "
                  "and Serve replaces it", flush=True)
            return self._engine_failed()
        return self._sized(body)

    def _engine_failed(self) -> dict[str, Any]:
        """Retryable: another replica, or this one's replacement, serves the request."""
        self.counts["engine_failed"] += 1
        return {"status": 503, "body": error_body(503, "the model's engine failed on this replica, which is being "
                                                  "replaced; retry later", "server_overloaded",
                                                  code="engine_failed")}

    def _sized(self, body: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode())
        limit = self.settings["max_response_bytes"]
        if size > limit:
            return {"status": 400, "body": error_body(
                400, f"the response would be {size} bytes, over this server's {limit}; ask for fewer prompts, "
                "tokens or logprobs", code="response_too_large")}
        return {"status": 200, "body": body}

    async def completions(self, req: CompletionRequest) -> dict[str, Any]:
        return await self._run(completion, self.engine, req, self._adapter(req.model), self.limits)

    async def chat(self, req: ChatRequest) -> dict[str, Any]:
        return await self._run(chat_completion, self.engine, req, self._adapter(req.model), self.limits)

    def info(self) -> dict[str, Any]:
        return {"context_length": self.engine.context_length, "interruptible": self.interruptible, "pid": os.getpid(),
                "failure": self.failure, **self.counts}

    def check_health(self) -> None:
        """Serve calls this every `serve.health_check_period_s`; raising gets the replica replaced. The
        engine is unhealthy once a call failed inside it, or when a one-token canary fails while the
        replica is idle (a busy replica's engine is proving itself on real requests)."""
        if self.failure is None and self.counts["in_flight"] == 0:
            try:
                self.engine.score([[0, 0]])
            except Exception as err:  # noqa: BLE001
                self.failure = f"health canary: {type(err).__name__}: {err}"[:500]
        if self.failure is not None:
            raise RuntimeError(f"the engine of {self.name} failed: {self.failure}")


app = FastAPI(title="kale-ray", docs_url=None, redoc_url=None)


def _json_error(status: int, body: dict[str, Any], retry_after_s: int = 1) -> JSONResponse:
    headers = {"Retry-After": str(retry_after_s)} if status == 503 else None
    return JSONResponse(body, status_code=status, headers=headers)


# One place maps every client error to its 4xx in OpenAI's error shape.
@app.exception_handler(ApiError)
async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return _json_error(exc.status, exc.body())


@app.exception_handler(ValidationError)
async def _schema_error(request: Request, exc: ValidationError) -> JSONResponse:
    err = validation_error(exc)
    return _json_error(err.status, err.body())


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return _json_error(400, error_body(400, f"invalid request: {exc.errors()[:3]}"))


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return _json_error(exc.status_code, error_body(exc.status_code, str(exc.detail), code=str(exc.status_code)))


MAX_KEY_CHARS = 1024


@serve.deployment
@serve.ingress(app)
class OpenAIIngress:
    def __init__(self, handles: dict[str, DeploymentHandle], routes: dict[str, str],
                 settings: dict[str, Any]) -> None:
        self.handles = handles      # base name -> ModelServer handle
        self.routes = routes        # served model name (base or adapter) -> base name
        self.settings = settings
        key = read_api_key(settings)
        self.api_key = key.encode("utf-8") if key is not None else None
        self.created = int(time.time())

    def _auth(self, request: Request) -> None:
        """Constant-time comparison of bytes: a non-ASCII, empty or huge token is a 401 like any other."""
        if self.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = token.strip().encode("latin-1", "replace")  # Starlette decodes headers as latin-1
        if scheme.lower() != "bearer" or not given or len(given) > MAX_KEY_CHARS \
                or not hmac.compare_digest(given, self.api_key):
            raise ApiError(401, "missing or wrong API key (Authorization: Bearer ...)", "authentication_error",
                           code="invalid_api_key")

    async def _body(self, request: Request) -> dict[str, Any]:
        limit = self.settings["max_request_bytes"]
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"request body over {limit} bytes", code="request_too_large")

        async def read() -> bytes:
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, f"request body over {limit} bytes", code="request_too_large")
                chunks.append(chunk)
            return b"".join(chunks)

        timeout = self.settings["body_timeout_s"]
        try:
            raw = await asyncio.wait_for(read(), timeout)
        except TimeoutError:
            raise ApiError(408, f"the request body did not arrive within {timeout:g} s",
                           code="request_timeout") from None
        return parse_body(raw)

    def _route(self, model: str) -> DeploymentHandle:
        if model not in self.routes:
            raise ApiError(404, f"the model {model[:256]!r} does not exist; GET /v1/models lists the served ones",
                           param="model", code="model_not_found")
        return self.handles[self.routes[model]]

    async def _call(self, request: Request, kind: type, method: str) -> JSONResponse:
        self._auth(request)
        req = validate(kind, await self._body(request))
        handle = self._route(req.model)
        try:
            result = await getattr(handle, method).remote(req)
        except Exception as err:
            if type(err).__name__ == "BackPressureError":  # Serve's router queue is full
                raise ApiError(503, "the model's request queue is full; retry later", "server_overloaded",
                               code="queue_full") from None
            if isinstance(err, RayActorError):  # its replica died or is restarting: Serve replaces it
                raise ApiError(503, "the model's replica is restarting; retry later", "server_overloaded",
                               code="replica_unavailable") from None
            # Not the client's fault (a replica died, a bug): a 500 in the API's shape.
            return self._respond(500, error_body(500, f"internal error: {type(err).__name__}: {err}"[:2000],
                                                 "server_error"))
        return self._respond(result["status"], result["body"])

    def _respond(self, status: int, body: dict[str, Any]) -> JSONResponse:
        return _json_error(status, body, self.settings["retry_after_s"])

    @app.post("/v1/completions")
    async def completions(self, request: Request) -> JSONResponse:
        return await self._call(request, CompletionRequest, "completions")

    @app.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> JSONResponse:
        return await self._call(request, ChatRequest, "chat")

    @app.get("/v1/models")
    async def models(self, request: Request) -> JSONResponse:
        self._auth(request)
        data = [{"id": name, "object": "model", "created": self.created, "owned_by": "kale-ray",
                 "root": base, "parent": None if name == base else base} for name, base in self.routes.items()]
        return JSONResponse({"object": "list", "data": data})

    @app.get("/health")
    async def health(self) -> JSONResponse:
        """Liveness of the ingress; it never waits on a model replica, so it answers while they compute."""
        return JSONResponse({"status": "ok"})

    @app.get("/ready")
    async def readiness(self) -> JSONResponse:
        """Ready once every model's replica answers (each loads its weights before it answers)."""
        try:
            infos = await asyncio.wait_for(
                asyncio.gather(*(h.info.remote() for h in self.handles.values())), timeout=5)
        except Exception as err:  # noqa: BLE001
            return JSONResponse({"status": "not ready", "reason": f"{type(err).__name__}: {err}"},
                                status_code=503, headers={"Retry-After": str(self.settings["retry_after_s"])})
        return JSONResponse({"status": "ready",
                             "models": {name: info for name, info in zip(self.handles, infos, strict=True)}})
