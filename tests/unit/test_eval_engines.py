"""Engine pieces that need no model: vLLM's prompt log-probs converted like transformers' (vLLM needs a
GPU here, so its output objects are built by hand), and request validation of the API schemas."""

from types import SimpleNamespace

import pytest

from kale_ray.serving.openai_api import ApiError, CompletionRequest, parse_body, validate
from kale_ray.serving.vllm_engine import scored_from_prompt_logprobs


def _lp(value):
    return SimpleNamespace(logprob=value)


def test_vllm_prompt_logprobs_keep_the_actual_token_and_the_top_k():
    seq = [5, 7, 9]
    prompt_logprobs = [None, {7: _lp(-0.5), 3: _lp(-1.0)}, {2: _lp(-0.1), 9: _lp(-3.0), 4: _lp(-4.0)}]
    scored = scored_from_prompt_logprobs(seq, prompt_logprobs, top=1)
    assert scored.logprobs == [None, -0.5, -3.0]
    assert scored.top == [None, {7: -0.5}, {2: -0.1, 9: -3.0}]
    assert scored.greedy == [True, True, False]


def test_request_validation_errors_are_400_with_the_field_named():
    with pytest.raises(ApiError) as err:
        validate(CompletionRequest, {"model": "m", "prompt": "x", "max_tokens": "5"})
    assert err.value.status == 400 and err.value.param == "max_tokens"
    with pytest.raises(ApiError):
        parse_body(b"{nope")
    ok = validate(CompletionRequest, {"model": "m", "prompt": [[1, 2], [3]], "echo": True, "user": "extra"})
    assert ok.prompt == [[1, 2], [3]] and ok.echo is True
