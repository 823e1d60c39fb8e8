"""The openai writer's failure paths that need no server: nothing listening, retry policy, config."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kale_ray.config import ConfigError
from kale_ray.config.synth import SynthConfig
from kale_ray.http_retry import retry_after as _retry_after
from kale_ray.http_retry import retryable as _retryable
from kale_ray.ray_utils import free_port
from kale_ray.synth.backends import make_backend
from kale_ray.synth.rows import write_rationales
from tests.synth_support import arc_rows, with_paths


def test_nothing_listening_becomes_error_rows_after_retries(data_root):
    cfg = SynthConfig(backend="openai", endpoint=f"http://127.0.0.1:{free_port()}/v1", max_retries=2,
                      retry_backoff_s=0.05, timeout_s=2, concurrency=2)
    backend = make_backend(cfg, "any-model", seed=0)
    rows = [with_paths(r, found=True) for r in arc_rows(data_root, 3)]
    out = write_rationales(rows, backend, ki=True, no_path="fallback", max_paths=4, generator={})
    backend.close()
    for row in out:
        assert row["status"] == "error" and row["error_kind"] == "endpoint" and row["rationale"] is None
        assert "after 3 attempts" in row["error"] and "ConnectionError" in row["error"]
        assert row["retries"] == 2


def test_retry_policy():
    assert _retryable(429) and _retryable(500) and _retryable(503)
    assert not _retryable(400) and not _retryable(401) and not _retryable(404)
    assert _retry_after("3", 0.5) == 3.0 and _retry_after(None, 0.5) == 0.5
    assert _retry_after("soon", 0.5) == 0.5 and _retry_after("999", 0.5) == 60.0


def test_openai_backend_needs_an_endpoint():
    with pytest.raises(ConfigError, match="synth.endpoint"):
        make_backend(SynthConfig(backend="openai"), "m", seed=0)


@contextmanager
def _busy_server(busy_answers: int, content: str = "A rationale.") -> Iterator[tuple[str, list[int]]]:
    """A real HTTP server on 127.0.0.1 that answers 503 + Retry-After to its first `busy_answers`
    requests, then a chat completion saying `content`."""
    statuses: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers["Content-Length"]))
            busy = len(statuses) < busy_answers
            statuses.append(503 if busy else 200)
            body = b'{"error": "queue full"}' if busy else json.dumps({
                "choices": [{"message": {"content": content}, "finish_reason": "stop"}],
                "usage": {"completion_tokens": 3}}).encode()
            self.send_response(statuses[-1])
            if busy:
                self.send_header("Retry-After", "0.05")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", statuses
    finally:
        server.shutdown()
        server.server_close()


def test_a_busy_server_is_waited_out_within_the_time_budget_not_a_count(data_root):
    rows = [with_paths(r, found=True) for r in arc_rows(data_root, 1)]
    # A rationale the degenerate-output judge keeps: long enough, and it names the answer.
    rationale = f"Thinking it through step by step, only {rows[0]['gold_text']} fits every clue the question gives."
    with _busy_server(busy_answers=12, content=rationale) as (endpoint, statuses):
        cfg = SynthConfig(backend="openai", endpoint=endpoint, max_retries=0, busy_wait_s=60, concurrency=1)
        backend = make_backend(cfg, "any-model", seed=0)
        [row] = write_rationales(rows, backend, ki=True, no_path="fallback", max_paths=4, generator={})
        backend.close()
    assert row["status"] == "ok" and row["rationale"] == rationale and row["retries"] == 12
    assert statuses == [503] * 12 + [200]


def test_a_server_busy_past_the_budget_is_an_error_row(data_root):
    with _busy_server(busy_answers=10**6) as (endpoint, statuses):
        cfg = SynthConfig(backend="openai", endpoint=endpoint, busy_wait_s=0.3, concurrency=1)
        backend = make_backend(cfg, "any-model", seed=0)
        rows = [with_paths(r, found=True) for r in arc_rows(data_root, 1)]
        [row] = write_rationales(rows, backend, ki=True, no_path="fallback", max_paths=4, generator={})
        backend.close()
    assert row["status"] == "error" and "still busy after" in row["error"] and "HTTP 503" in row["error"]
    assert len(statuses) >= 2 and set(statuses) == {503}
