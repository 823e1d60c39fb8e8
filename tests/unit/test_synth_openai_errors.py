"""The openai writer's failure paths that need no server: nothing listening, retry policy, config."""

from __future__ import annotations

import socket

import pytest

from kale_ray.config import ConfigError
from kale_ray.synth.backends import make_backend
from kale_ray.synth.backends.openai_http import _retry_after, _retryable
from kale_ray.synth.config import SynthConfig
from kale_ray.synth.rows import write_rationales
from tests.synth_support import arc_rows, with_paths


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_nothing_listening_becomes_error_rows_after_retries(data_root):
    cfg = SynthConfig(backend="openai", endpoint=f"http://127.0.0.1:{_free_port()}/v1", max_retries=2,
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
