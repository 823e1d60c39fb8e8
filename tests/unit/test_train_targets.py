"""Frozen and cached KA targets in the trainer's own step (one process, DDP runner, no process group).

With LoRA the frozen target is the trained model with its adapters disabled: its q equals the initial
model's q before and after steps, and no second model exists. The cached target (top-k of the initial
model's q) gives the frozen target's loss exactly when k keeps all but one token. The default suite runs
these on the tiny random Llama (same tokenizer); the slow suite repeats them on the real SmolLM2.
"""

import pytest
import torch

from kale_ray.config.train import KAConfig, LoraConfig, OptimConfig, TrainConfig
from kale_ray.engines.loading import load_causal_lm
from kale_ray.train.collate import answer_logits, collate, tokenize_rows
from kale_ray.train.loop import build_model, train_step
from kale_ray.train.runners import DDPRunner
from kale_ray.train.target_cache import attach_cache, row_targets
from kale_ray.train.targets import AdaptersOff, frozen_target
from tests.train_data import arc_rows, with_rationales

CPU = torch.device("cpu")


@pytest.fixture(params=["tiny", pytest.param("smollm2", marks=pytest.mark.slow)])
def setup(request, data_root):
    from transformers import AutoTokenizer

    path = str(request.getfixturevalue("tiny_llama_path" if request.param == "tiny" else "smollm2_path"))
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokens, _ = tokenize_rows(tokenizer, with_rationales(arc_rows(data_root, 2)), "ka", 128)
    return path, tokenizer.pad_token_id, tokens


def _runner(path, lora=True, **ka):
    tc = TrainConfig(method="ka", optim=OptimConfig(lr=5e-2, schedule="constant"), ka=KAConfig(**ka),
                     lora=LoraConfig(enabled=lora))
    torch.manual_seed(0)
    return tc, DDPRunner(build_model(path, tc), tc, 10, 1, CPU)


def _target_logits(forward, batch):
    with torch.no_grad():
        return answer_logits(forward(**batch["target"], logits_to_keep=batch["span"] + 1).logits, batch["span"])


def test_lora_frozen_target_is_the_initial_model_with_no_second_model(setup):
    path, pad, tokens = setup
    tc, runner = _runner(path, target="frozen")
    frozen = frozen_target("ka", tc, runner, lambda: build_model(path, tc, trainable=False))
    assert isinstance(frozen, AdaptersOff) and frozen.runner is runner  # the trained module, no copy
    batch = collate(tokens.to_pydict(), pad, with_target=True)
    initial = _target_logits(load_causal_lm(path, dtype="float32"), batch)
    assert torch.allclose(_target_logits(frozen, batch), initial, atol=1e-5)
    for _ in range(2):
        train_step([tokens.to_pydict()], method="ka", tc=tc, runner=runner, frozen=frozen, pad_id=pad, device=CPU)
    assert torch.allclose(_target_logits(frozen, batch), initial, atol=1e-5)  # the base never moves
    live = _target_logits(runner.module, batch)  # adapters on: the trained model has moved away
    assert not torch.allclose(live, initial, atol=1e-3)


def test_full_fine_tuning_keeps_a_frozen_copy(setup):
    path, _, _ = setup
    tc, runner = _runner(path, lora=False, target="frozen")
    frozen = frozen_target("ka", tc, runner, lambda: build_model(path, tc, trainable=False))
    assert not isinstance(frozen, AdaptersOff)
    assert not any(p.requires_grad for p in frozen.parameters())
    assert frozen_target("ka", tc.model_copy(update={"ka": KAConfig(target="cached")}), runner, list) is None


def test_cached_target_gives_the_frozen_loss_when_k_keeps_all_but_one_token(setup):
    path, pad, tokens = setup
    vocab = load_causal_lm(path, dtype="float32").config.vocab_size
    losses = {}
    for target in ("frozen", "cached"):
        tc, runner = _runner(path, target=target, target_topk=vocab - 1)
        rows = tokens
        if target == "cached":
            initial = load_causal_lm(path, dtype="float32")
            cache = row_targets(initial, tokens.to_pydict(), pad, tc.ka.target_topk, tc.ka.temperature, CPU)
            rows = attach_cache(tokens, cache)
        frozen = frozen_target("ka", tc, runner, lambda tc=tc: build_model(path, tc, trainable=False))
        losses[target] = [train_step([rows.to_pydict()], method="ka", tc=tc, runner=runner, frozen=frozen,
                                     pad_id=pad, device=CPU)["loss"] for _ in range(2)]
    assert losses["cached"] == pytest.approx(losses["frozen"], rel=1e-4)
    assert losses["cached"][1] != pytest.approx(losses["cached"][0], rel=1e-3)  # it did train
