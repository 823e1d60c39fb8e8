"""KA's target pass on the student's prefix cache (train.ka.share_prefix) is exact: the real SmolLM2 gives the
same answer-position logits as a full target forward, and the trainer the same loss and LoRA gradients."""

import pytest
import torch

from kale_ray.config.train import KAConfig, OptimConfig, TrainConfig
from kale_ray.train.collate import answer_logits, collate, shared_prefix_len, tokenize_rows
from kale_ray.train.loop import build_model, shared_target_logits, train_step
from kale_ray.train.runners import DDPRunner
from tests.train_data import arc_rows, with_rationales


@pytest.fixture(scope="module")
def tokenizer(smollm2_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_path)


@pytest.fixture(scope="module")
def tokens(tokenizer, data_root):
    """Four real rows of different lengths; the last one's target view lost its 3 oldest prompt tokens
    (as a left-truncated prompt does), so it shares no prefix and must take the full target pass."""
    rows = with_rationales(arc_rows(data_root, 4))
    table, _ = tokenize_rows(tokenizer, rows, "ka", 256)
    batch = table.to_pydict()
    batch["target_ids"][3] = batch["target_ids"][3][3:]
    assert len({len(s) for s in batch["student_ids"]}) > 1 and len({len(t) for t in batch["target_ids"]}) > 1
    return batch


def test_shared_prefix_len_stops_at_the_first_difference_and_spares_the_answer():
    assert shared_prefix_len([1, 2, 3, 9, 9], [1, 2, 3, 4, 5, 9, 9], 2) == 3
    assert shared_prefix_len([7, 2, 3], [1, 2, 3, 4, 5], 1) == 0
    # identical views: the target keeps the answer and the token that predicts its first token
    assert shared_prefix_len([1, 2, 3, 4], [1, 2, 3, 4], 2) == 1


def test_shared_target_logits_equal_a_full_target_forward(tokenizer, tokens, smollm2_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smollm2_path)
    batch = collate(tokens, tokenizer.pad_token_id, with_target=True, share_prefix=True)
    shared, span = batch["shared"], batch["span"]
    assert shared["prefix_len"][:3].min() > 10 and shared["prefix_len"][3] == 0
    # the pass runs only the suffixes: fewer tokens than the whole views
    assert shared["suffix_tokens"] == sum(len(t) for t in tokens["target_ids"]) - int(shared["prefix_len"].sum())
    with torch.no_grad():
        student = model(**batch["student"], use_cache=True)
        got = shared_target_logits(model, student.past_key_values, shared, span, torch.device("cpu"))
        full = answer_logits(model(**batch["target"]).logits, span)
        mask = batch["answer_mask"]
        assert torch.allclose(got[mask], full[mask], atol=1e-4, rtol=0)
        for i in range(4):  # and each row alone, without any padding
            row = {k: [v[i]] for k, v in tokens.items()}
            alone = collate(row, tokenizer.pad_token_id, with_target=True)
            n = alone["span"]
            one = answer_logits(model(**alone["target"]).logits, n)[0]
            assert torch.allclose(got[i, -n:], one, atol=1e-4, rtol=0)


class _GradRecorder(DDPRunner):
    """The DDP runner (no process group) that keeps each step's trainable gradients before stepping."""

    grads: list[dict[str, torch.Tensor]]

    def step(self) -> None:
        self.grads = [*getattr(self, "grads", []),
                      {n: p.grad.clone() for n, p in self.model.named_parameters() if p.requires_grad}]
        super().step()


def test_ka_loss_and_lora_gradients_equal_the_unshared_path(tokenizer, tokens, smollm2_path):
    """lora_B is set to seeded non-zero values first (peft starts it at 0), so LoRA changes q/k/v/o and the
    cached prefix comes from the trained model, as the live target requires."""
    results = {}
    for share in (True, False):
        tc = TrainConfig(method="ka", optim=OptimConfig(lr=1e-2, schedule="constant"),
                         ka=KAConfig(share_prefix=share, ce_weight=0.5))
        torch.manual_seed(0)
        model = build_model(str(smollm2_path), tc)
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
        runner = _GradRecorder(model, tc, 10, 1, torch.device("cpu"))
        rec = train_step([tokens], method="ka", tc=tc, runner=runner, frozen=None, pad_id=tokenizer.pad_token_id,
                         device=torch.device("cpu"))
        results[share] = (rec, runner.grads[0])
    (shared, shared_grads), (full, full_grads) = results[True], results[False]
    assert shared["kl"] > 0
    for key in ("loss", "kl", "ce"):
        assert shared[key] == pytest.approx(full[key], rel=1e-5)
    assert shared["tokens"] < full["tokens"]  # the target pass ran fewer tokens
    assert shared_grads.keys() == full_grads.keys() and len(shared_grads) > 0
    for name, grad in full_grads.items():
        assert float(grad.norm()) > 0, name
        assert float((shared_grads[name] - grad).norm()) <= 1e-4 * float(grad.norm()), name
