"""The one loader: specs resolve to a base plus adapters (a bare LoRA directory brings its base), and
the loaded model is the tuned one in the asked dtype and mode, on the real SmolLM2 and a real LoRA."""

from __future__ import annotations

import pytest

from kale_ray.engines.hf import HFEngine
from kale_ray.engines.loading import BARE_ADAPTER, Checkpoint, load_causal_lm, resolve_checkpoint
from tests.ray.serve_helpers import make_lora_adapter, token_logprobs

TEXT = "Question: What is the capital of France?\nAnswer: Paris"


@pytest.fixture(scope="module")
def adapter(smollm2_path, tmp_path_factory):
    return make_lora_adapter(smollm2_path, tmp_path_factory.mktemp("lora") / "adapter")


def test_specs_resolve_to_a_base_and_its_adapters(smollm2_path, adapter):
    assert resolve_checkpoint("smollm2-135m-instruct") == Checkpoint(str(smollm2_path))
    assert resolve_checkpoint(smollm2_path, {"a": str(adapter)}) == Checkpoint(str(smollm2_path), {"a": str(adapter)})
    bare = resolve_checkpoint(adapter, {"b": "elsewhere"})
    assert bare == Checkpoint(str(smollm2_path), {BARE_ADAPTER: str(adapter), "b": "elsewhere"}, BARE_ADAPTER)
    with pytest.raises(ValueError, match="taken"):
        resolve_checkpoint(adapter, {BARE_ADAPTER: "elsewhere"})


def test_a_bare_adapter_loads_as_the_tuned_model_in_eval_mode_and_engines(smollm2_path, adapter):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids = AutoTokenizer.from_pretrained(smollm2_path)(TEXT, add_special_tokens=False).input_ids
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(smollm2_path), adapter).eval()
    model = load_causal_lm(adapter, dtype="float32")
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert next(model.parameters()).dtype == torch.float32
    assert token_logprobs(model, ids) == pytest.approx(token_logprobs(reference, ids), abs=1e-5)
    with model.disable_adapter():
        base = token_logprobs(model, ids)
    assert max(abs(a - b) for a, b in zip(base, token_logprobs(reference, ids), strict=True)) > 1e-2
    engine = HFEngine(adapter)  # a call without an adapter runs the tuned model, never its base alone
    assert engine.adapters == [BARE_ADAPTER] and engine.default_adapter == BARE_ADAPTER
    assert engine.score([ids])[0].logprobs[1:] == pytest.approx(token_logprobs(reference, ids), abs=1e-4)


def test_trainable_keeps_gradients_and_bf16_is_honoured(tiny_llama_path):
    import torch

    trainable = load_causal_lm(tiny_llama_path, dtype="float32", trainable=True)
    assert all(p.requires_grad for p in trainable.parameters())
    frozen = load_causal_lm(tiny_llama_path, dtype="bfloat16")
    assert next(frozen.parameters()).dtype == torch.bfloat16 and not frozen.training
    with pytest.raises(ValueError, match="unknown dtype"):
        load_causal_lm(tiny_llama_path, dtype="float33")
