"""OpenAI-compatible request schemas, validation and responses, independent of Ray Serve and of the
engine (transformers or vLLM), so every backend answers with the same bodies and the same errors.

Errors are `ApiError`s carrying the HTTP status and OpenAI's error body
`{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from kale_ray.engines.base import ContextLengthError, GenerationRequest


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def error_body(status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return ApiError(status, message, type_, param, code).body()


class _Request(BaseModel):
    # Unknown fields are ignored (clients send `user`, `seed`, ...); known ones must have their type.
    model_config = ConfigDict(extra="ignore", strict=True)

    model: StrictStr
    max_tokens: StrictInt | None = Field(None, ge=0)
    temperature: StrictFloat | StrictInt = Field(1.0, ge=0, le=2)
    top_p: StrictFloat | StrictInt = Field(1.0, gt=0, le=1)
    n: StrictInt = Field(1, ge=1, le=1)
    stop: StrictStr | list[StrictStr] | None = None
    seed: StrictInt | None = None
    stream: StrictBool = False

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class CompletionRequest(_Request):
    prompt: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]
    logprobs: StrictInt | None = Field(None, ge=0, le=20)
    echo: StrictBool = False


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    role: Literal["system", "user", "assistant"]
    content: StrictStr


class ChatRequest(_Request):
    messages: list[ChatMessage] = Field(..., min_length=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=0)
    logprobs: StrictBool = False
    top_logprobs: StrictInt | None = Field(None, ge=0, le=20)


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, f"request body is not valid JSON: {err}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


def validate(kind: type[_Request], body: dict[str, Any]) -> Any:
    try:
        req = kind.model_validate(body)
    except ValidationError as err:
        first = err.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        kinds = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()[:5])
        raise ApiError(400, f"invalid request: {kinds}", param=param) from None
    if req.stream:
        raise ApiError(400, "streaming is not supported by this server", param="stream")
    return req


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def _prompts(engine: Any, req: CompletionRequest, max_prompts: int) -> list[tuple[list[int], list[int] | None, str | None]]:
    """(ids, char offsets or None, text or None) per prompt."""
    prompt = req.prompt
    if isinstance(prompt, str):
        items: list[str | list[int]] = [prompt]
    elif prompt and all(isinstance(p, int) for p in prompt):
        items = [list(prompt)]  # type: ignore[arg-type]
    else:
        items = list(prompt)  # type: ignore[arg-type]
    if not items:
        raise ApiError(400, "prompt must not be empty", param="prompt")
    if len(items) > max_prompts:
        raise ApiError(400, f"at most {max_prompts} prompts per request", param="prompt")
    out = []
    for item in items:
        if isinstance(item, str):
            ids, offsets = engine.encode_with_offsets(item)
            out.append((ids, offsets, item))
        else:
            try:
                engine.check_ids(item)
            except ValueError as err:
                raise ApiError(400, str(err), param="prompt") from None
            out.append((list(item), None, None))
        if not out[-1][0]:
            raise ApiError(400, "prompt must not be empty", param="prompt")
    return out


def _check_length(engine: Any, n_prompt: int, max_tokens: int) -> None:
    try:
        engine.check_length(n_prompt, max_tokens)
    except ContextLengthError as err:
        raise ApiError(400, str(err), param="prompt", code="context_length_exceeded") from None


def _logprobs_block(engine: Any, ids: list[int], lps: list[float | None], tops: list[dict[int, float] | None],
                    offsets: list[int]) -> dict[str, Any]:
    def top_map(entry: dict[int, float] | None) -> dict[str, float] | None:
        if entry is None:
            return None
        return {engine.token_text(t): v for t, v in sorted(entry.items(), key=lambda kv: -kv[1])}

    return {"tokens": [engine.token_text(t) for t in ids], "token_logprobs": lps,
            "top_logprobs": [top_map(e) for e in tops], "text_offset": offsets}


def _running_offsets(engine: Any, ids: list[int], start: int) -> list[int]:
    offsets, pos = [], start
    for t in ids:
        offsets.append(pos)
        pos += len(engine.token_text(t))
    return offsets


def completion(engine: Any, req: CompletionRequest, adapter: str | None, default_max_tokens: int,
               max_prompts: int) -> dict[str, Any]:
    """`/v1/completions`. `max_tokens: 0` with `echo` scores the prompts only, batched in one pass."""
    max_tokens = default_max_tokens if req.max_tokens is None else req.max_tokens
    prompts = _prompts(engine, req, max_prompts)
    for ids, _, _ in prompts:
        _check_length(engine, len(ids), max_tokens)
    top = req.logprobs or 0
    want_lp = req.logprobs is not None
    choices, n_prompt, n_completion = [], 0, 0
    if max_tokens == 0:
        scored = engine.score([ids for ids, _, _ in prompts], adapter, top) if (req.echo and want_lp) else None
        results = [(None, scored[i] if scored else None) for i in range(len(prompts))]
    else:
        gens = engine.generate_batch([
            GenerationRequest(ids, max_tokens, float(req.temperature), float(req.top_p), req.stops(), req.seed, top,
                              echo=req.echo and want_lp) for ids, _, _ in prompts], adapter)
        results = [(gen, gen.prompt) for gen in gens]
    for index, ((ids, offsets, text), (gen, prompt_scored)) in enumerate(zip(prompts, results, strict=True)):
        prompt_text = text if text is not None else engine.decode(ids)
        new_ids = gen.ids if gen else []
        body_text = (prompt_text if req.echo else "") + (gen.text if gen else "")
        lp_block = None
        if want_lp:
            p_offsets = offsets if offsets is not None else _running_offsets(engine, ids, 0)
            g_offsets = _running_offsets(engine, new_ids, len(prompt_text) if req.echo else 0)
            t_ids, t_lps, t_tops, t_off = [], [], [], []
            if req.echo:
                assert prompt_scored is not None
                t_ids, t_lps, t_tops, t_off = list(ids), list(prompt_scored.logprobs), list(prompt_scored.top), p_offsets
            if gen:
                t_ids, t_lps = t_ids + new_ids, t_lps + list(gen.logprobs)
                t_tops, t_off = t_tops + list(gen.top), list(t_off) + g_offsets
            lp_block = _logprobs_block(engine, t_ids, t_lps, t_tops, t_off)
        choices.append({"index": index, "text": body_text, "logprobs": lp_block,
                        "finish_reason": gen.finish_reason if gen else "length"})
        n_prompt += len(ids)
        n_completion += len(new_ids)
    return {"id": _new_id("cmpl"), "object": "text_completion", "created": int(time.time()), "model": req.model,
            "choices": choices,
            "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_completion,
                      "total_tokens": n_prompt + n_completion}}


def chat_completion(engine: Any, req: ChatRequest, adapter: str | None, default_max_tokens: int) -> dict[str, Any]:
    """`/v1/chat/completions` through the model's chat template."""
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    max_tokens = default_max_tokens if max_tokens is None else max_tokens
    ids = engine.chat_prompt([m.model_dump() for m in req.messages])
    _check_length(engine, len(ids), max_tokens)
    top = req.top_logprobs or 0
    gen = engine.generate(ids, max_tokens, float(req.temperature), float(req.top_p), req.stops(), req.seed,
                          adapter, top)
    logprobs = None
    if req.logprobs:
        logprobs = {"content": [
            {"token": engine.token_text(t), "logprob": lp,
             "top_logprobs": [{"token": engine.token_text(k), "logprob": v}
                              for k, v in sorted(entry.items(), key=lambda kv: -kv[1])][:top]}
            for t, lp, entry in zip(gen.ids, gen.logprobs, gen.top, strict=True)]}
    return {"id": _new_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()),
            "model": req.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": gen.text},
                         "logprobs": logprobs, "finish_reason": gen.finish_reason}],
            "usage": {"prompt_tokens": len(ids), "completion_tokens": len(gen.ids),
                      "total_tokens": len(ids) + len(gen.ids)}}
