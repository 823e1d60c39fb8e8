"""Any OpenAI-compatible chat endpoint: a vLLM server, the project's Serve app, a hosted model.

Plain HTTP (requests) with a thread pool: `concurrency` requests in flight per actor, a timeout per
request. A busy server (429, 503) is waited out within a time budget (`busy_wait_s`, Retry-After
honoured): it is live and will answer, so however slow the machine, a full queue costs time, never rows.
Failures (connection errors, timeouts, other 5xx, 408/409/425) are retried `max_retries` times with
exponential backoff. Other 4xx answers are the request's fault and are not retried. A request that still
fails becomes an error row; the job goes on.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kale_ray.synth.backends.base import Backend, Generation, Request, sampling

BUSY_STATUS = {429, 503}
RETRY_STATUS = {408, 409, 425}
MAX_BACKOFF_S = 10.0


def _retryable(status: int) -> bool:
    return status in BUSY_STATUS or status in RETRY_STATUS or status >= 500


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, cfg: Any, model: str, seed: int) -> None:
        if not cfg.endpoint:
            from kale_ray.config import ConfigError

            raise ConfigError("synth.endpoint: the openai backend needs the server's base URL (…/v1)")
        self.cfg, self.model, self.seed = cfg, model, seed
        self.url = cfg.endpoint.rstrip("/") + "/chat/completions"
        key = os.environ.get(cfg.api_key_env)
        self.headers = {"Content-Type": "application/json"}
        if key:
            self.headers["Authorization"] = f"Bearer {key}"
        self.pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="synth-http")
        self.local = threading.local()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model, "endpoint": self.cfg.endpoint,
                **sampling(self.cfg, self.seed)}

    def render(self, messages: list[dict[str, str]]) -> str:
        return json.dumps(messages, ensure_ascii=False)

    def generate(self, requests: list[Request]) -> list[Generation]:
        return list(self.pool.map(self._one, requests))

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _session(self):  # noqa: ANN202 (requests.Session)
        import requests

        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session

    def _one(self, req: Request) -> Generation:
        import requests

        body = {"model": self.model, "messages": req.messages, "max_tokens": self.cfg.max_new_tokens,
                "temperature": self.cfg.temperature, "top_p": self.cfg.top_p, "seed": self.seed}
        prompt = self.render(req.messages)
        last = ""
        failures = busy = 0
        busy_until = time.monotonic() + self.cfg.busy_wait_s
        while True:
            wait = min(self.cfg.retry_backoff_s * (2 ** min(failures + busy, 16)), MAX_BACKOFF_S)
            try:
                resp = self._session().post(self.url, json=body, headers=self.headers, timeout=self.cfg.timeout_s)
            except requests.RequestException as err:
                last, failures = f"{type(err).__name__}: {err}", failures + 1
            else:
                if resp.status_code == 200:
                    return self._parse(resp, prompt, failures + busy)
                last = f"HTTP {resp.status_code}: {resp.text[:300]}"
                if not _retryable(resp.status_code):
                    kind = "context_length" if "context" in resp.text.lower() else "endpoint"
                    return Generation(error=last, error_kind=kind, prompt=prompt,
                                      extra={"retries": failures + busy})
                wait = _retry_after(resp.headers.get("Retry-After"), wait)
                if resp.status_code in BUSY_STATUS:
                    busy += 1
                    if time.monotonic() + wait <= busy_until:
                        time.sleep(wait)
                        continue
                    return Generation(error=f"server still busy after {self.cfg.busy_wait_s:.0f} s: {last}",
                                      error_kind="endpoint", prompt=prompt, extra={"retries": failures + busy})
                failures += 1
            if failures > self.cfg.max_retries:
                return Generation(error=f"endpoint error after {failures} attempts: {last}", error_kind="endpoint",
                                  prompt=prompt, extra={"retries": failures + busy - 1})
            time.sleep(wait)

    def _parse(self, resp: Any, prompt: str, retries: int) -> Generation:
        try:
            data = resp.json()
            choice = data["choices"][0]
            text = choice["message"]["content"]
            tokens = int((data.get("usage") or {}).get("completion_tokens") or 0)
        except (ValueError, KeyError, IndexError, TypeError) as err:
            return Generation(error=f"malformed response ({err!r}): {resp.text[:300]}", error_kind="endpoint",
                              prompt=prompt, extra={"retries": retries})
        return Generation(text=text, tokens=tokens, finish_reason=choice.get("finish_reason"), prompt=prompt,
                          extra={"retries": retries})


def _retry_after(header: str | None, default: float) -> float:
    if not header:
        return default
    try:
        return min(max(float(header), 0.0), 60.0)
    except ValueError:
        return default
