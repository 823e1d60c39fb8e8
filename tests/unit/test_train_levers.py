"""The memory levers on the real SmolLM2 in one process: gradient checkpointing recomputes and changes
nothing else (loss and LoRA gradients equal; with the live target it takes the full target pass), a
bfloat16 base keeps float32 adapters and optimizer states, the attention kernel is chosen through
load_causal_lm, and a user DeepSpeed JSON is merged under ours."""

import json

import pytest
import torch

from kale_ray.config import ConfigError, load_config
from kale_ray.config.train import KAConfig, OptimConfig, TrainConfig
from kale_ray.train.collate import tokenize_rows
from kale_ray.train.deepspeed_config import deepspeed_config, merge, ours
from kale_ray.train.loop import build_model, lever_notes, train_step
from kale_ray.train.runners import DDPRunner
from tests.train_data import arc_rows, with_rationales


@pytest.fixture(scope="module")
def tokens(smollm2_path, data_root):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    table, _ = tokenize_rows(tokenizer, with_rationales(arc_rows(data_root, 2)), "ka", 128)
    return table.to_pydict(), tokenizer.pad_token_id


class _GradRecorder(DDPRunner):
    def step(self) -> None:
        self.grads = {n: p.grad.clone() for n, p in self.model.named_parameters() if p.requires_grad}
        super().step()


def _lora_model(path, tc):
    torch.manual_seed(0)
    model = build_model(str(path), tc)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-zero lora_B, so the adapters change the forward
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
    return model


def _saved_bytes(model, batch, pad):
    """Bytes autograd keeps for backward in one plain-view forward (weights aside: storages under 50 MB)."""
    from kale_ray.train.collate import collate

    student = collate(batch, pad, with_target=False)["student"]
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(**student, logits_to_keep=2)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in saved.items() if ptr not in params)


def test_gradient_checkpointing_keeps_loss_and_lora_gradients_and_drops_activations(tokens, smollm2_path):
    batch, pad = tokens
    results = {}
    for checkpointing in (False, True):
        tc = TrainConfig(method="ka", optim=OptimConfig(lr=1e-2, schedule="constant"),
                         ka=KAConfig(ce_weight=0.5), gradient_checkpointing=checkpointing)
        model = _lora_model(smollm2_path, tc)
        saved = _saved_bytes(model, batch, pad)
        runner = _GradRecorder(model, tc, 10, 1, torch.device("cpu"))
        rec = train_step([batch], method="ka", tc=tc, runner=runner, frozen=None, pad_id=pad,
                         device=torch.device("cpu"))
        results[checkpointing] = (rec, runner.grads, saved)
    (plain, plain_grads, plain_saved), (ckpt, ckpt_grads, ckpt_saved) = results[False], results[True]
    assert plain_saved > 5 * ckpt_saved  # only the 30 layers' inputs stay for backward
    assert ckpt["tokens"] > plain["tokens"]  # no prefix cache under checkpointing: the full target pass ran
    for key in ("loss", "kl", "ce"):
        assert ckpt[key] == pytest.approx(plain[key], rel=1e-5)
    assert plain_grads.keys() == ckpt_grads.keys() and plain_grads
    for name, grad in plain_grads.items():
        assert float((ckpt_grads[name] - grad).norm()) <= 1e-4 * float(grad.norm()) + 1e-12, name


def test_checkpointing_note_says_the_prefix_cache_is_off():
    assert lever_notes(TrainConfig(method="ka", gradient_checkpointing=True), "ka")
    assert not lever_notes(TrainConfig(method="ka"), "ka")
    assert not lever_notes(TrainConfig(method="sft", gradient_checkpointing=True), "sft")


def test_bfloat16_base_keeps_float32_adapters_and_optimizer_states(tokens, smollm2_path):
    batch, pad = tokens
    losses = {}
    for base in ("float32", "bfloat16"):
        tc = TrainConfig(method="ka", base_dtype=base, optim=OptimConfig(lr=1e-2, schedule="constant"))
        model = _lora_model(smollm2_path, tc)
        trained = [p for p in model.parameters() if p.requires_grad]
        frozen = [p for p in model.parameters() if not p.requires_grad]
        assert trained and {p.dtype for p in trained} == {torch.float32}
        assert {p.dtype for p in frozen} == {getattr(torch, base)}
        runner = DDPRunner(model, tc, 10, 1, torch.device("cpu"))
        losses[base] = train_step([batch], method="ka", tc=tc, runner=runner, frozen=None, pad_id=pad,
                                  device=torch.device("cpu"))["loss"]
        states = [t for s in runner.optimizer.state.values() for t in s.values() if t.dim() > 0]
        assert states and {t.dtype for t in states} == {torch.float32}
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=0.05)  # a bf16 base, not another model


def test_attn_implementation_reaches_the_model(smollm2_path):
    from kale_ray.engines.loading import load_causal_lm

    ids = torch.tensor([[1, 504, 3458, 314, 253, 1345]])
    logits = {}
    for kernel in ("sdpa", "eager"):
        model = load_causal_lm(smollm2_path, dtype="float32", attn_implementation=kernel)
        assert model.config._attn_implementation == kernel
        with torch.no_grad():
            logits[kernel] = model(input_ids=ids).logits
    assert torch.allclose(logits["sdpa"], logits["eager"], atol=1e-4)
    with pytest.raises(ValueError, match="flash-attn package"):
        load_causal_lm(smollm2_path, attn_implementation="flash_attention_2")
    with pytest.raises(ConfigError, match="attn_implementation"):
        load_config(None, ["model.attn_implementation=flash"])


def test_user_deepspeed_json_is_merged_under_ours(tmp_path):
    user = {"train_batch_size": 999, "gradient_accumulation_steps": 7, "bf16": {"enabled": True},
            "zero_optimization": {"stage": 3, "reduce_bucket_size": 12345}, "gradient_clipping": 0.5,
            "optimizer": {"type": "Adam"}, "communication_data_type": "fp32"}
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(user))
    tc = TrainConfig(zero_stage=2, micro_batch_size=4, grad_accum=2, deepspeed_config=path)
    merged = deepspeed_config(tc, world=2)
    assert merged["train_batch_size"] == 16 and merged["gradient_accumulation_steps"] == 2
    assert merged["bf16"] == {"enabled": False} and "optimizer" not in merged
    assert merged["zero_optimization"] == {"stage": 2, "reduce_bucket_size": 12345}
    assert merged["gradient_clipping"] == 0.5 and merged["communication_data_type"] == "fp32"
    _, overridden = merge(user, ours(tc, 2))
    assert {line.split("=")[0] for line in overridden} == {
        "train_batch_size", "gradient_accumulation_steps", "bf16.enabled", "zero_optimization.stage", "optimizer"}
    with pytest.raises(ValueError, match="not found"):
        deepspeed_config(TrainConfig(deepspeed_config=tmp_path / "none.json"), world=1)


def test_offload_and_precision_in_our_deepspeed_config():
    cfg = ours(TrainConfig(zero_stage=3, offload_optimizer=True, offload_params=True, precision="bf16"), 2)
    assert cfg["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert cfg["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert cfg["bf16"] == {"enabled": True}
    # a bf16 LoRA base: DeepSpeed must not cast the float32 adapters, the loop autocasts instead
    assert ours(TrainConfig(precision="bf16", base_dtype="bfloat16"), 1)["bf16"] == {"enabled": False}


@pytest.mark.parametrize("overrides, message", [
    (["train.offload_params=true"], "zero_stage=3"),
    (["train.offload_optimizer=true", "train.zero_stage=0"], "zero_stage >= 1"),
    (["train.strategy=ddp", "train.offload_optimizer=true"], "strategy=deepspeed"),
    (["train.lora.enabled=false", "train.base_dtype=bfloat16"], "full fine-tuning"),
])
def test_levers_that_do_not_fit_the_strategy_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)
