"""Starting the real Serve app on the test cluster (127.0.0.1, a free port) and making a LoRA adapter."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

API_KEY_ENV = "KALE_TEST_SERVE_KEY"
API_KEY = "test-key-123"


def write_key_file(directory: Path, key: str = API_KEY) -> Path:
    """The API key as a secret file (owner-only), which replicas read: `serve.api_key_file`."""
    path = Path(directory) / "serve-api-key"
    path.write_text(key + "\n")
    path.chmod(0o600)
    return path


def make_lora_adapter(base: Path, out: Path) -> Path:
    """A LoRA adapter on the real model with non-zero B matrices, so it changes every output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(out)
    return out


@contextmanager
def running_app(cfg, name: str) -> Iterator[str]:  # noqa: ANN001 (KaleConfig)
    """Start Serve on 127.0.0.1:serve.port, deploy `build_app(cfg)` as `name`, yield its base URL,
    then delete the app and shut down the Serve instance this started."""
    from ray import serve

    from kale_ray.serving.app import build_app

    port = cfg.serve.port
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(cfg), name=name, route_prefix=f"/{name}")
    base = f"http://127.0.0.1:{port}/{name}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/ready", timeout=10).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(1)
    try:
        yield base
    finally:
        serve.delete(name)
        serve.shutdown()


def reference_models(model_path, adapter):  # noqa: ANN001, ANN201
    """(tokenizer, base, base+LoRA) from transformers and peft in this process: what the API must match."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    base = AutoModelForCausalLM.from_pretrained(model_path).eval()
    lora = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_path), adapter).eval()
    return tok, base, lora


def token_logprobs(model, ids: list[int]) -> list[float]:  # noqa: ANN001
    """log p(ids[i] | ids[:i]) for every token but the first, computed directly."""
    import torch

    with torch.no_grad():
        logp = model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
    return [float(logp[i - 1, ids[i]]) for i in range(1, len(ids))]


GREEDY_PROMPT = "The three primary colors are"


def greedy_reference(tok, model, prompt: str = GREEDY_PROMPT, new_tokens: int = 8):  # noqa: ANN001, ANN201
    """(prompt ids, transformers' greedy continuation ids): what a temperature-0 completion must match."""
    import torch

    ids = tok(prompt, add_special_tokens=False).input_ids
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=new_tokens, do_sample=False)[0, len(ids):]
    return ids, out
