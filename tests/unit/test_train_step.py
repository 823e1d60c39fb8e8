"""The trainer's step in one process (no process group) with the real SmolLM2 and LoRA: the frozen
target stays the initial model, the live one moves with training, and accumulation is normalised
by the window's token count."""

import pytest
import torch

from kale_ray.config.train import KAConfig, OptimConfig, TrainConfig
from kale_ray.train.collate import tokenize_rows
from kale_ray.train.loop import build_model, train_step
from kale_ray.train.runners import DDPRunner
from tests.train_data import arc_rows, with_rationales

# Minutes of CPU on a loaded 2-core machine (14 in-process steps of the real model): slow suite.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(smollm2_path, data_root):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    rows = with_rationales(arc_rows(data_root, 2))
    tokens, _ = tokenize_rows(tokenizer, rows, "ka", 128)
    return str(smollm2_path), tokenizer.pad_token_id, tokens


def _runner(path, **ka):
    tc = TrainConfig(method="ka", optim=OptimConfig(lr=5e-3, schedule="constant"), ka=KAConfig(**ka))
    torch.manual_seed(0)
    return tc, DDPRunner(build_model(path, tc), tc, 10, 1, torch.device("cpu"))


def test_frozen_target_stays_initial_and_live_target_moves(setup):
    path, pad, tokens = setup
    batch = tokens.to_pydict()
    losses = {}
    for target in ("live", "frozen"):
        tc, runner = _runner(path, target=target)
        frozen = build_model(path, tc, trainable=False) if target == "frozen" else None
        before = None if frozen is None else {k: v.clone() for k, v in frozen.state_dict().items()}
        losses[target] = [train_step([batch], method="ka", tc=tc, runner=runner, frozen=frozen, pad_id=pad,
                                     device=torch.device("cpu"))["loss"] for _ in range(3)]
        if frozen is not None:
            assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())
            assert not any(p.requires_grad for p in frozen.parameters())
    assert losses["live"][0] == pytest.approx(losses["frozen"][0], rel=1e-5)  # same initial model
    assert losses["live"][2] != pytest.approx(losses["frozen"][2], rel=1e-3)  # then the targets differ


@pytest.mark.parametrize("direction", ["forward", "jsd"])
def test_other_directions_train(setup, direction):
    path, pad, tokens = setup
    tc, runner = _runner(path, direction=direction, ce_weight=0.5)
    recs = [train_step([tokens.to_pydict()], method="ka", tc=tc, runner=runner, frozen=None, pad_id=pad,
                       device=torch.device("cpu")) for _ in range(3)]
    assert recs[-1]["loss"] < recs[0]["loss"]
    assert recs[0]["loss"] == pytest.approx(recs[0]["kl"] + 0.5 * recs[0]["ce"], rel=1e-6)


def test_accumulation_window_is_normalised_by_its_token_count(setup):
    """Two one-row micro-batches give the loss and the update of one two-row batch."""
    path, pad, tokens = setup
    results = []
    for window in ([tokens.to_pydict()], [tokens.slice(0, 1).to_pydict(), tokens.slice(1, 1).to_pydict()]):
        tc, runner = _runner(path)
        rec = train_step(window, method="ka", tc=tc, runner=runner, frozen=None, pad_id=pad,
                         device=torch.device("cpu"))
        second = train_step([tokens.to_pydict()], method="ka", tc=tc, runner=runner, frozen=None, pad_id=pad,
                            device=torch.device("cpu"))
        results.append((rec["loss"], second["loss"]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-4)
    assert results[0][1] == pytest.approx(results[1][1], rel=1e-3)
