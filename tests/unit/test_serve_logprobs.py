"""Non-finite log-probs in a response are clamped to -9999.0 as vLLM's API does, so the JSON body
stays valid. The model is real and really produces them: the tiny Llama with two output rows of
±1e38 and a huge final-norm gain, so one logit is +inf and the softmax's normaliser infinite."""

from __future__ import annotations

import json
import math

import pytest

from kale_ray.serving.openai_api import (
    LOGPROB_FLOOR,
    ChatRequest,
    CompletionRequest,
    Limits,
    chat_completion,
    completion,
)


@pytest.fixture(scope="module")
def broken_engine(tmp_path_factory, tiny_llama_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kale_ray.engines.hf import HFEngine

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path)
    with torch.no_grad():
        model.model.norm.weight[0] = 1e4
        head = model.get_output_embeddings().weight  # tied to the input embeddings
        head[5].zero_()
        head[6].zero_()
        head[5, 0], head[6, 0] = 1e38, -1e38
    out = tmp_path_factory.mktemp("broken")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_llama_path).save_pretrained(out)
    return HFEngine(out, device="cpu")


def test_echoed_and_generated_logprobs_are_finite(broken_engine):
    ids = [100, 200, 300, 400]
    raw = broken_engine.score([ids], None, 2)[0].logprobs[1:]
    assert not all(math.isfinite(x) for x in raw)  # the engine really produces them
    req = CompletionRequest.model_validate({"model": "m", "prompt": ids, "max_tokens": 2, "echo": True,
                                            "logprobs": 2, "temperature": 0})
    body = completion(broken_engine, req, None, Limits())
    json.dumps(body, allow_nan=False)  # what the HTTP layer sends: no NaN, no Infinity
    lp = body["choices"][0]["logprobs"]
    assert LOGPROB_FLOOR in lp["token_logprobs"]
    assert all(v is None or math.isfinite(v) for v in lp["token_logprobs"])
    assert all(math.isfinite(v) for top in lp["top_logprobs"] if top for v in top.values())


def test_chat_logprobs_are_finite(broken_engine):
    req = ChatRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                      "max_tokens": 2, "logprobs": True, "top_logprobs": 2, "temperature": 0})
    body = chat_completion(broken_engine, req, None, Limits())
    json.dumps(body, allow_nan=False)
    content = body["choices"][0]["logprobs"]["content"]
    assert content and all(math.isfinite(c["logprob"]) for c in content)
    assert any(c["logprob"] == LOGPROB_FLOOR for c in content)
