"""Any OpenAI-compatible chat endpoint: a vLLM server, the project's Serve app, a hosted model.

Plain HTTP (requests) with a thread pool: `concurrency` requests in flight per actor, a timeout per
request, kale_ray.http_retry's policy (a busy server waited out within `busy_wait_s`, failures retried
`max_retries` times). A request that still fails becomes an error row; the job goes on.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kale_ray.synth.backends.base import Backend, Generation, Request, sampling


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
        from kale_ray.http_retry import post_json

        body = {"model": self.model, "messages": req.messages, "max_tokens": self.cfg.max_new_tokens,
                "temperature": self.cfg.temperature, "top_p": self.cfg.top_p, "seed": self.seed}
        prompt = self.render(req.messages)
        out = post_json(self._session(), self.url, body, headers=self.headers, timeout_s=self.cfg.timeout_s,
                        max_retries=self.cfg.max_retries, busy_wait_s=self.cfg.busy_wait_s,
                        backoff_s=self.cfg.retry_backoff_s)
        if out.error is None and out.response.status_code == 200:
            return self._parse(out.response, prompt, out.retries)
        if out.error is None:  # a 4xx: the request's fault, not retried
            text = out.response.text
            kind = "context_length" if "context" in text.lower() else "endpoint"
            return Generation(error=f"HTTP {out.response.status_code}: {text[:300]}", error_kind=kind,
                              prompt=prompt, extra={"retries": out.retries})
        return Generation(error=out.error, error_kind="endpoint", prompt=prompt, extra={"retries": out.retries})

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

