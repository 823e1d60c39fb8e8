"""The OpenAI-compatible API, answered over real HTTP on 127.0.0.1 by a real Serve deployment of the
real SmolLM2-135M-Instruct plus a LoRA adapter, checked against transformers computed directly."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from kale_ray.config import load_config
from kale_ray.ray_utils import free_port
from tests.ray.serve_helpers import (
    API_KEY,
    GREEDY_PROMPT,
    greedy_reference,
    make_lora_adapter,
    reference_models,
    running_app,
    token_logprobs,
    write_key_file,
)

pytestmark = pytest.mark.ray

BASE, LORA = "smollm2", "smollm2-lora"
TEXT = "Answer the question.\nQuestion: What is the capital of France?\nAnswer: Paris"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, smollm2_path):
    return make_lora_adapter(smollm2_path, tmp_path_factory.mktemp("lora") / "adapter")


@pytest.fixture(scope="module")
def api(ray_local, tmp_path_factory, smollm2_path, adapter):
    models = json.dumps([{"name": BASE, "path": str(smollm2_path), "adapters": {LORA: str(adapter)}}])
    key_file = write_key_file(tmp_path_factory.mktemp("key"))
    cfg = load_config(None, [f"serve.models={models}", f"serve.port={free_port()}", "serve.replica_cpus=0.5",
                             f"serve.api_key_file={key_file}", "serve.max_queued=2", "serve.max_request_bytes=200000"])
    with running_app(cfg, "apitest") as base:
        yield base + "/v1"


@pytest.fixture(scope="module")
def direct(smollm2_path, adapter):
    return reference_models(smollm2_path, adapter)



def post(api, path, body, headers=AUTH, **kw):
    return requests.post(f"{api}{path}", json=body, headers=headers, timeout=300, **kw)


def test_health_readiness_and_models(api):
    root = api[: -len("/v1")]
    assert requests.get(f"{root}/health", timeout=30).json() == {"status": "ok"}
    ready = requests.get(f"{root}/ready", timeout=30)
    assert ready.status_code == 200 and ready.json()["models"][BASE]["context_length"] == 8192
    resp = requests.get(f"{api}/models", headers=AUTH, timeout=30)
    assert resp.status_code == 200, resp.text
    models = resp.json()
    assert {m["id"]: m["parent"] for m in models["data"]} == {BASE: None, LORA: BASE}


@pytest.mark.parametrize("model_name", [BASE, LORA])
def test_echo_logprobs_equal_transformers(api, direct, model_name):
    tok, base, lora = direct
    ids = tok(TEXT, add_special_tokens=False).input_ids
    expected = token_logprobs(base if model_name == BASE else lora, ids)
    out = post(api, "/completions", {"model": model_name, "prompt": TEXT, "max_tokens": 0, "echo": True,
                                     "logprobs": 1})
    assert out.status_code == 200, out.text
    choice = out.json()["choices"][0]
    lp = choice["logprobs"]
    assert choice["text"] == TEXT and "".join(lp["tokens"]) == TEXT
    assert lp["token_logprobs"][0] is None and len(lp["token_logprobs"]) == len(ids)
    assert lp["token_logprobs"][1:] == pytest.approx(expected, abs=1e-4)
    assert [TEXT[o:] .startswith(t) for o, t in zip(lp["text_offset"], lp["tokens"], strict=True)] == [True] * len(ids)


def test_lora_changes_the_output(api, direct):
    outs = [post(api, "/completions", {"model": m, "prompt": TEXT, "max_tokens": 0, "echo": True,
                                       "logprobs": 0}).json()["choices"][0]["logprobs"]["token_logprobs"][1:]
            for m in (BASE, LORA)]
    assert max(abs(a - b) for a, b in zip(*outs, strict=True)) > 1e-2


def test_lm_eval_style_request_with_token_ids(api, direct):
    """lm-evaluation-harness's local-completions: token ids, max_tokens 1, logprobs 1, echo, and it
    sums token_logprobs[ctxlen:-1]: the last entry must be the generated token."""
    tok, base, _ = direct
    ids = tok(TEXT, add_special_tokens=False).input_ids
    body = {"model": BASE, "prompt": [ids, ids[:-1]], "max_tokens": 1, "logprobs": 1, "echo": True,
            "temperature": 0, "seed": 1234}
    out = post(api, "/completions", body)
    assert out.status_code == 200, out.text
    choices = sorted(out.json()["choices"], key=lambda c: c["index"])
    for choice, prompt in zip(choices, [ids, ids[:-1]], strict=True):
        lp = choice["logprobs"]
        assert len(lp["token_logprobs"]) == len(prompt) + 1
        assert lp["token_logprobs"][1:-1] == pytest.approx(token_logprobs(base, prompt), abs=1e-4)
        for value, top in zip(lp["token_logprobs"][1:], lp["top_logprobs"][1:], strict=True):
            assert value in top.values() and len(top) >= 1
    # The second prompt's generated token is greedy: its log-prob is the top one.
    last = choices[1]["logprobs"]
    assert last["token_logprobs"][-1] == pytest.approx(max(last["top_logprobs"][-1].values()))


def test_greedy_generation_equals_transformers_generate_and_stop_cuts(api, direct):
    tok, base, _ = direct
    ids, ref = greedy_reference(tok, base)
    out = post(api, "/completions", {"model": BASE, "prompt": GREEDY_PROMPT, "max_tokens": 8, "temperature": 0})
    choice = out.json()["choices"][0]
    assert choice["text"] == tok.decode(ref) and choice["finish_reason"] == "length"
    assert out.json()["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 8, "total_tokens": len(ids) + 8}
    word = tok.decode(ref).split()[1]
    stopped = post(api, "/completions", {"model": BASE, "prompt": GREEDY_PROMPT, "max_tokens": 8, "temperature": 0,
                                         "stop": [word]}).json()["choices"][0]
    assert stopped["finish_reason"] == "stop" and word not in stopped["text"]
    assert tok.decode(ref).startswith(stopped["text"])


def test_openai_client_completes_a_chat(api):
    import openai

    client = openai.OpenAI(base_url=api, api_key=API_KEY, max_retries=0)
    reply = client.chat.completions.create(model=BASE, messages=[
        {"role": "user", "content": "What is the capital of France?"}], max_tokens=12, temperature=0)
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content.strip()
    assert reply.usage.completion_tokens <= 12
    text = client.completions.create(model=LORA, prompt="Hello", max_tokens=3, temperature=0)
    assert text.usage.completion_tokens == 3
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])


GOOD = {"model": BASE, "prompt": "Hello", "max_tokens": 1}
BAD = [
    ("no key", "/completions", GOOD, {}, 401),
    ("wrong key", "/completions", GOOD, {"Authorization": "Bearer nope"}, 401),
    ("malformed json", "/completions", b'{"model": "smollm2", "prompt": ', AUTH, 400),
    ("not an object", "/completions", [1, 2], AUTH, 400),
    ("missing prompt", "/completions", {"model": BASE}, AUTH, 400),
    ("missing model", "/completions", {"prompt": "hi"}, AUTH, 400),
    ("string max_tokens", "/completions", {**GOOD, "max_tokens": "ten"}, AUTH, 400),
    ("negative max_tokens", "/completions", {**GOOD, "max_tokens": -1}, AUTH, 400),
    ("string temperature", "/completions", {**GOOD, "temperature": "hot"}, AUTH, 400),
    ("string echo", "/completions", {**GOOD, "echo": "yes"}, AUTH, 400),
    ("empty prompt", "/completions", {**GOOD, "prompt": ""}, AUTH, 400),
    ("token id out of range", "/completions", {**GOOD, "prompt": [1, 10**9]}, AUTH, 400),
    ("prompt over context", "/completions", {**GOOD, "prompt": [42] * 8193}, AUTH, 400),
    ("max_tokens over context", "/completions", {**GOOD, "max_tokens": 10**6}, AUTH, 400),
    ("stream", "/completions", {**GOOD, "stream": True}, AUTH, 400),
    ("unknown model", "/completions", {**GOOD, "model": "gpt-9"}, AUTH, 404),
    ("body too large", "/completions", {**GOOD, "prompt": "x" * 300_000}, AUTH, 413),
    ("chat without messages", "/chat/completions", {"model": BASE, "messages": []}, AUTH, 400),
    ("chat bad role", "/chat/completions", {"model": BASE, "messages": [{"role": "x", "content": "hi"}]}, AUTH, 400),
    ("unknown route", "/nothing", GOOD, AUTH, 404),
]


@pytest.mark.parametrize(("what", "path", "body", "headers", "status"), BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_4xx_and_the_replica_keeps_serving(api, what, path, body, headers, status):
    if isinstance(body, bytes):
        resp = requests.post(f"{api}{path}", data=body, headers={**headers, "Content-Type": "application/json"},
                             timeout=60)
    else:
        resp = post(api, path, body, headers=headers)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["message"] and error["type"]
    good = post(api, "/completions", GOOD)
    assert good.status_code == 200 and good.json()["choices"][0]["text"]


def test_full_queue_answers_503_with_retry_after_and_recovers(api):
    body = {"model": BASE, "prompt": "Write a long story about a dragon.", "max_tokens": 48, "temperature": 0}
    with ThreadPoolExecutor(12) as pool:
        resps = list(pool.map(lambda _: post(api, "/completions", body), range(12)))
    codes = sorted(r.status_code for r in resps)
    assert set(codes) == {200, 503}, codes
    assert codes.count(200) >= 3  # one running plus two queued (serve.max_queued=2) always get through
    for r in resps:
        if r.status_code == 503:
            assert int(r.headers["Retry-After"]) >= 1 and r.json()["error"]["code"] == "queue_full"
    assert post(api, "/completions", GOOD).status_code == 200
