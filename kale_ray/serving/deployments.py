"""The Serve deployments: one `ModelServer` per base checkpoint (its LoRA adapters inside it) and an
HTTP ingress (FastAPI) that authenticates, limits, validates and routes by the `model` field.

Every failure a client can cause ends as a 4xx with an OpenAI error body; the replica keeps serving.
A bounded queue per replica turns overload into 503 + Retry-After instead of unbounded latency.
"""

import asyncio
import hmac
import os
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from kale_ray.serving.openai_api import (
    ApiError,
    ChatRequest,
    CompletionRequest,
    chat_completion,
    completion,
    error_body,
    parse_body,
    validate,
)


def load_engine(backend: str, path: str, adapters: dict[str, str], dtype: str, device: str,
                engine_kwargs: dict[str, Any]) -> Any:
    """The replica's engine; `path` may be a registered name (prepared on first use)."""
    if backend == "vllm":
        from kale_ray.engines.vllm import VLLMEngine

        return VLLMEngine(path, adapters=adapters, dtype=dtype, **engine_kwargs)
    from kale_ray.engines.hf import HFEngine

    return HFEngine(path, adapters=adapters, dtype=dtype, device=device)


@serve.deployment
class ModelServer:
    """One base model and its adapters. Calls run one at a time in a worker thread; at most
    `max_queued` more wait, the rest are refused at once (the ingress answers 503)."""

    def __init__(self, model: dict[str, Any], settings: dict[str, Any]) -> None:
        self.name = model["name"]
        self.adapters = dict(model.get("adapters") or {})
        self.settings = settings
        self.engine = load_engine(settings["backend"], model["path"], self.adapters, settings["dtype"],
                                  settings["device"], settings.get("vllm_engine_kwargs") or {})
        self.in_flight = 0
        self.served = 0

    def _adapter(self, model: str) -> str | None:
        return None if model == self.name else model

    async def _run(self, fn: Any, *args: Any) -> dict[str, Any]:
        if self.in_flight - 1 >= self.settings["max_queued"]:
            return {"status": 503, "body": error_body(503, "the model's request queue is full; retry later",
                                                      "server_overloaded", code="queue_full")}
        self.in_flight += 1
        try:
            return {"status": 200, "body": await asyncio.to_thread(fn, *args)}
        except ApiError as err:
            return {"status": err.status, "body": err.body()}
        finally:
            self.in_flight -= 1
            self.served += 1

    async def completions(self, req: CompletionRequest) -> dict[str, Any]:
        return await self._run(completion, self.engine, req, self._adapter(req.model),
                               self.settings["default_max_tokens"], self.settings["max_prompts"])

    async def chat(self, req: ChatRequest) -> dict[str, Any]:
        return await self._run(chat_completion, self.engine, req, self._adapter(req.model),
                               self.settings["default_max_tokens"])

    def info(self) -> dict[str, Any]:
        return {"context_length": self.engine.context_length, "in_flight": self.in_flight,
                "served": self.served}

    def check_health(self) -> None:
        if self.engine is None:
            raise RuntimeError("engine not loaded")


app = FastAPI(title="kale-ray", docs_url=None, redoc_url=None)


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(error_body(exc.status_code, str(exc.detail), code=str(exc.status_code)),
                        status_code=exc.status_code)


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse(error_body(400, f"invalid request: {exc.errors()[:3]}"), status_code=400)


@serve.deployment
@serve.ingress(app)
class OpenAIIngress:
    def __init__(self, handles: dict[str, DeploymentHandle], routes: dict[str, str],
                 settings: dict[str, Any]) -> None:
        self.handles = handles      # base name -> ModelServer handle
        self.routes = routes        # served model name (base or adapter) -> base name
        self.settings = settings
        env = settings.get("api_key_env")
        self.api_key = os.environ.get(env) if env else None
        if env and not self.api_key:
            raise RuntimeError(f"serve.api_key_env={env} but that environment variable is empty")
        self.created = int(time.time())
        self.ready = False

    def _auth(self, request: Request) -> None:
        if self.api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not (given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip(), self.api_key)):
            raise ApiError(401, "missing or wrong API key (Authorization: Bearer ...)", "authentication_error",
                           code="invalid_api_key")

    async def _body(self, request: Request) -> dict[str, Any]:
        limit = self.settings["max_request_bytes"]
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"request body over {limit} bytes", code="request_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"request body over {limit} bytes", code="request_too_large")
            chunks.append(chunk)
        return parse_body(b"".join(chunks))

    def _route(self, model: str) -> DeploymentHandle:
        if model not in self.routes:
            raise ApiError(404, f"the model {model!r} does not exist; GET /v1/models lists the served ones",
                           param="model", code="model_not_found")
        return self.handles[self.routes[model]]

    async def _call(self, request: Request, kind: type, method: str) -> JSONResponse:
        try:
            self._auth(request)
            req = validate(kind, await self._body(request))
            handle = self._route(req.model)
            try:
                result = await getattr(handle, method).remote(req)
            except Exception as err:  # Serve's back-pressure when the router's queue is full
                if type(err).__name__ == "BackPressureError":
                    raise ApiError(503, "the model's request queue is full; retry later", "server_overloaded",
                                   code="queue_full") from None
                raise
            return self._respond(result["status"], result["body"])
        except ApiError as err:
            return self._respond(err.status, err.body())
        except Exception as err:  # noqa: BLE001 (a bug must still answer in the API's shape)
            return self._respond(500, error_body(500, f"internal error: {type(err).__name__}: {err}",
                                                 "server_error"))

    def _respond(self, status: int, body: dict[str, Any]) -> JSONResponse:
        headers = {"Retry-After": str(self.settings["retry_after_s"])} if status == 503 else None
        return JSONResponse(body, status_code=status, headers=headers)

    @app.post("/v1/completions")
    async def completions(self, request: Request) -> JSONResponse:
        return await self._call(request, CompletionRequest, "completions")

    @app.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> JSONResponse:
        return await self._call(request, ChatRequest, "chat")

    @app.get("/v1/models")
    async def models(self, request: Request) -> JSONResponse:
        try:
            self._auth(request)
        except ApiError as err:
            return self._respond(err.status, err.body())
        data = [{"id": name, "object": "model", "created": self.created, "owned_by": "kale-ray",
                 "root": base, "parent": None if name == base else base} for name, base in self.routes.items()]
        return JSONResponse({"object": "list", "data": data})

    @app.get("/health")
    async def health(self) -> JSONResponse:
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
