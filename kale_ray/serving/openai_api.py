"""OpenAI-compatible request schemas, validation and responses, independent of Ray Serve and of the
engine (transformers or vLLM), so every backend answers with the same bodies and the same errors.

Errors are `ApiError`s carrying the HTTP status and OpenAI's error body
`{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
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


# Bounds of the request schema: anything past them is the client's fault (400), never the engine's.
MAX_JSON_DEPTH = 32
MAX_INT_DIGITS = 20         # int64 has 19 digits; longer literals are refused before Python parses them
MAX_STOPS, MAX_STOP_CHARS = 16, 256
MAX_TOP_LOGPROBS = 20
MAX_MESSAGES = 1024
SEED_RANGE = (-(2**63), 2**63 - 1)  # OpenAI's int64 seed
GREEDY_BELOW = 1e-5         # temperatures under this decode greedily (as vLLM does): 1/T would overflow
LOGPROB_FLOOR = -9999.0     # what vLLM's API answers for a -inf or NaN log-prob (JSON has no infinities)

StopStr = Annotated[StrictStr, Field(min_length=1, max_length=MAX_STOP_CHARS)]
TokenId = Annotated[StrictInt, Field(ge=0)]


class _Request(BaseModel):
    """Unknown fields are refused (400 naming them), as OpenAI's API does, so a client never gets
    silently different semantics (say an ignored `logit_bias`). OpenAI fields that change nothing at
    their neutral value are accepted at that value only."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: StrictStr = Field(..., max_length=256)
    max_tokens: StrictInt | None = Field(None, ge=0, le=2**31)
    temperature: StrictFloat | StrictInt = Field(1.0, ge=0, le=2)
    top_p: StrictFloat | StrictInt = Field(1.0, gt=0, le=1)
    n: StrictInt = Field(1, ge=1, le=1)
    stop: StopStr | Annotated[list[StopStr], Field(max_length=MAX_STOPS)] | None = None
    seed: StrictInt | None = Field(None, ge=SEED_RANGE[0], le=SEED_RANGE[1])
    stream: StrictBool = False
    # accepted and ignored (neutral values only)
    user: StrictStr | None = Field(None, max_length=256)
    frequency_penalty: Literal[0] | None = None
    presence_penalty: Literal[0] | None = None
    stream_options: None = None

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        """OpenAI clients send `null` for options they leave at their default."""
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def sampling_temperature(self) -> float:
        return 0.0 if self.temperature < GREEDY_BELOW else float(self.temperature)


class CompletionRequest(_Request):
    prompt: StrictStr | list[StrictStr] | list[TokenId] | list[list[TokenId]]
    logprobs: StrictInt | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    echo: StrictBool = False
    best_of: Literal[1] | None = None


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["text"]
    text: StrictStr


class ChatMessage(BaseModel):
    """Text chat only: `content` is a string or a list of text parts (joined); other parts (images,
    audio) and other roles (tool, function) are refused. `developer` is OpenAI's newer `system`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["system", "developer", "user", "assistant"]
    content: StrictStr | Annotated[list[TextPart], Field(min_length=1, max_length=256)]
    name: StrictStr | None = Field(None, max_length=256)  # accepted and ignored

    def plain(self) -> dict[str, str]:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatRequest(_Request):
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: StrictInt | None = Field(None, ge=0, le=2**31)
    logprobs: StrictBool = False
    top_logprobs: StrictInt | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)


def _refuse_constant(name: str) -> Any:
    raise ApiError(400, f"request body is not valid JSON: {name} is not a JSON number", code="invalid_json")


def _bounded_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INT_DIGITS:
        raise ApiError(400, f"request body has an integer literal of {len(literal)} characters; at most "
                       f"{MAX_INT_DIGITS} digits are accepted", code="invalid_json")
    return int(literal)


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ApiError(400, f"request body has a number out of range: {literal[:40]}", code="invalid_json")
    return value


def _check_tree(body: Any) -> None:
    """Nesting depth and well-formed text (no lone surrogates, which no tokenizer encodes), iteratively."""
    stack = [(body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ApiError(400, f"request body is nested deeper than {MAX_JSON_DEPTH} levels", code="invalid_json")
        if isinstance(node, dict):
            items = list(node.values()) + list(node.keys())
        elif isinstance(node, list):
            items = node
        else:
            if isinstance(node, str):
                try:
                    node.encode("utf-8")
                except UnicodeEncodeError:
                    raise ApiError(400, "request body has a string that is not valid Unicode (a lone surrogate)",
                                   code="invalid_json") from None
            continue
        stack.extend((item, depth + 1) for item in items)


def parse_body(raw: bytes) -> dict[str, Any]:
    """JSON as a hostile client may send it: NaN/Infinity, numbers out of range, integers of thousands
    of digits and deep nesting are 400s, not Python exceptions."""
    if not raw.strip():
        raise ApiError(400, "request body is empty; send a JSON object", code="invalid_json")
    try:
        body = json.loads(raw, parse_constant=_refuse_constant, parse_int=_bounded_int,
                          parse_float=_finite_float)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, f"request body is not valid JSON: {err}", code="invalid_json") from None
    except RecursionError:
        raise ApiError(400, f"request body is nested deeper than {MAX_JSON_DEPTH} levels",
                       code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object", code="invalid_json")
    _check_tree(body)
    return body


def validation_error(err: ValidationError) -> ApiError:
    """One 400 for every schema violation, naming the fields (never echoing their values)."""
    first = err.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    kinds = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in err.errors()[:5])
    return ApiError(400, f"invalid request: {kinds}", param=param)


def validate(kind: type[_Request], body: dict[str, Any]) -> Any:
    try:
        req = kind.model_validate(body)
    except ValidationError as err:
        raise validation_error(err) from None
    if req.stream:
        raise ApiError(400, "streaming is not supported by this server; send stream: false", param="stream")
    return req


def finite_logprob(value: float | None) -> float | None:
    """A log-prob as JSON can carry it: -inf and NaN become vLLM's -9999.0."""
    if value is None or math.isfinite(value):
        return value
    return LOGPROB_FLOOR


@dataclass(frozen=True)
class Limits:
    """What one request may ask of a replica (from `serve`)."""

    default_max_tokens: int = 16
    max_prompts: int = 64
    max_request_tokens: int = 65_536  # sum over prompts of prompt tokens + max_tokens


def _check_budget(limits: Limits, lengths: list[int], max_tokens: int) -> None:
    cost = sum(n + max_tokens for n in lengths)
    if cost > limits.max_request_tokens:
        raise ApiError(400, f"this request would process {cost} tokens ({len(lengths)} prompt(s) of "
                       f"{sum(lengths)} tokens plus max_tokens={max_tokens} each); one request may process at "
                       f"most {limits.max_request_tokens}: split it or ask for fewer tokens",
                       code="request_too_expensive")


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
        entry = {t: finite_logprob(v) for t, v in entry.items()}
        return {engine.token_text(t): v for t, v in sorted(entry.items(), key=lambda kv: -kv[1])}

    return {"tokens": [engine.token_text(t) for t in ids], "token_logprobs": [finite_logprob(x) for x in lps],
            "top_logprobs": [top_map(e) for e in tops], "text_offset": offsets}


def _running_offsets(engine: Any, ids: list[int], start: int) -> list[int]:
    offsets, pos = [], start
    for t in ids:
        offsets.append(pos)
        pos += len(engine.token_text(t))
    return offsets


def completion(engine: Any, req: CompletionRequest, adapter: str | None, limits: Limits) -> dict[str, Any]:
    """`/v1/completions`. `max_tokens: 0` with `echo` scores the prompts only, batched in one pass."""
    max_tokens = limits.default_max_tokens if req.max_tokens is None else req.max_tokens
    prompts = _prompts(engine, req, limits.max_prompts)
    for ids, _, _ in prompts:
        _check_length(engine, len(ids), max_tokens)
    _check_budget(limits, [len(ids) for ids, _, _ in prompts], max_tokens)
    top = req.logprobs or 0
    want_lp = req.logprobs is not None
    choices, n_prompt, n_completion = [], 0, 0
    if max_tokens == 0:
        scored = engine.score([ids for ids, _, _ in prompts], adapter, top) if (req.echo and want_lp) else None
        results = [(None, scored[i] if scored else None) for i in range(len(prompts))]
    else:
        gens = engine.generate_batch([
            GenerationRequest(ids, max_tokens, req.sampling_temperature(), float(req.top_p), req.stops(), req.seed, top,
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


def chat_completion(engine: Any, req: ChatRequest, adapter: str | None, limits: Limits) -> dict[str, Any]:
    """`/v1/chat/completions` through the model's chat template."""
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    max_tokens = limits.default_max_tokens if max_tokens is None else max_tokens
    ids = engine.chat_prompt([m.plain() for m in req.messages])
    _check_length(engine, len(ids), max_tokens)
    _check_budget(limits, [len(ids)], max_tokens)
    top = req.top_logprobs or 0
    gen = engine.generate(ids, max_tokens, req.sampling_temperature(), float(req.top_p), req.stops(), req.seed,
                          adapter, top)
    logprobs = None
    if req.logprobs:
        logprobs = {"content": [
            {"token": engine.token_text(t), "logprob": finite_logprob(lp),
             "top_logprobs": [{"token": engine.token_text(k), "logprob": finite_logprob(v)}
                              for k, v in sorted(entry.items(), key=lambda kv: -finite_logprob(kv[1]))][:top]}
            for t, lp, entry in zip(gen.ids, gen.logprobs, gen.top, strict=True)]}
    return {"id": _new_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()),
            "model": req.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": gen.text},
                         "logprobs": logprobs, "finish_reason": gen.finish_reason}],
            "usage": {"prompt_tokens": len(ids), "completion_tokens": len(gen.ids),
                      "total_tokens": len(ids) + len(gen.ids)}}
