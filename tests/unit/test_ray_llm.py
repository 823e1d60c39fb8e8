"""The pure parts of kale-ray's use of Ray's LLM stack (no vLLM here; tests/ray/test_*_vllm_cpu.py run
the real thing): how a row of Ray's vLLM processor becomes a rationale generation, and how Serve's
adapters map onto Ray's LoRA settings."""

import pytest

from kale_ray.config import ConfigError, load_config
from kale_ray.serving.app import ready_path, served_name, served_names
from kale_ray.serving.ray_llm import lora_prefix
from kale_ray.synth.ray_llm import to_generation

OK = {"kale_prompt": "P", "__inference_error__": "", "num_input_tokens": 10, "generated_text": "a b",
      "generated_tokens": [5, 6, 2], "num_generated_tokens": 3, "eos_ids": [2]}


def test_a_processor_row_becomes_a_generation():
    gen = to_generation(OK, max_new_tokens=3, max_len=100)
    assert (gen.text, gen.tokens, gen.finish_reason, gen.prompt, gen.error) == ("a b", 3, "stop", "P", None)
    # max_new_tokens tokens without a stop token: cut at the length; fewer: stopped.
    assert to_generation({**OK, "generated_tokens": [5, 6, 7]}, 3, 100).finish_reason == "length"
    assert to_generation({**OK, "generated_tokens": [5, 6, 7]}, 4, 100).finish_reason == "stop"


def test_failed_rows_are_errors_with_a_kind():
    refused = {**OK, "__inference_error__": "VLLMValidationError: This model's maximum context length is 1024 "
                                            "tokens. However, you requested 0 output tokens and your prompt ..."}
    gen = to_generation(refused, 16, 1024)
    assert gen.error_kind == "context_length" and gen.text is None and gen.prompt == "P"
    assert to_generation({**OK, "__inference_error__": "RuntimeError: boom"}, 16, 1024).error_kind == "generation"
    # Room for fewer than max_new_tokens: an error row, as the hf writer makes it (vLLM would cut it short).
    short = to_generation({**OK, "num_input_tokens": 95}, 16, 100)
    assert short.error_kind == "context_length" and short.prompt == "P"
    assert to_generation({**OK, "num_input_tokens": 95}, 16, None).error is None


def test_adapters_must_be_one_object_storage_prefix():
    model = {"name": "b", "adapters": {"x": "s3://bkt/ad/x", "y": "s3://bkt/ad/y/"}}
    assert lora_prefix(model) == "s3://bkt/ad"
    assert lora_prefix({"name": "b", "adapters": {}}) is None
    with pytest.raises(ConfigError, match="object storage only"):
        lora_prefix({"name": "b", "adapters": {"x": "/runs/ka/adapter"}})
    with pytest.raises(ConfigError, match="object storage only"):
        lora_prefix({"name": "b", "adapters": {"x": "s3://bkt/ad/other"}})
    with pytest.raises(ConfigError, match="several prefixes"):
        lora_prefix({"name": "b", "adapters": {"x": "s3://a/x", "y": "gs://b/y"}})


def test_served_names_follow_the_backend():
    models = '[{name: b, path: p, adapters: {x: "s3://bkt/ad/x"}}]'
    hf = load_config(None, [f"serve.models={models}"])
    vllm = load_config(None, [f"serve.models={models}", "serve.backend=vllm"])
    assert served_names(hf) == ["b", "x"] and served_names(vllm) == ["b", "b:x"]
    assert served_name(vllm, "b") == "b" and ready_path(hf) == "/ready" and ready_path(vllm) == "/v1/models"


def test_adapters_in_an_object_store_workdir_are_staged_for_ray_under_one_prefix(s3_store):
    """The eval stage on the vllm backend: trained adapters in an s3:// workdir become `<prefix>/<name>`
    URIs in that store, which Ray's dynamic LoRA loading accepts; a local adapter stays local (and
    lora_prefix refuses it, as before)."""
    from kale_ray import storage
    from kale_ray.eval.served import stage_adapters_in_store

    root = storage.local_root(f"{s3_store.uri}/vllm-adapters")
    adapter = root / "run" / "train" / "ka" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"w" * 64)
    storage.publish(adapter)
    entry = {"name": "base", "path": "/models/base", "adapters": {"KALE": str(adapter)}}
    (staged,) = stage_adapters_in_store([entry], root / "run" / "serve-adapters")
    assert staged["adapters"] == {"KALE": "s3://kale/session/vllm-adapters/run/serve-adapters/base/KALE"}
    assert lora_prefix(staged) == "s3://kale/session/vllm-adapters/run/serve-adapters/base"
    keys = s3_store.keys("session/vllm-adapters/run/serve-adapters/base/KALE/")
    assert len(keys) == 2
    local = {"name": "base", "path": "/models/base", "adapters": {"KALE": "/tmp/some/adapter"}}
    assert stage_adapters_in_store([local], root / "x") == [local]
