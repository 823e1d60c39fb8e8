"""KA losses against torch's own kl_div on random logits (TRL's GKD tests do the same)."""

import math

import pytest
import torch
import torch.nn.functional as F

from kale_ray.train.losses import method_sums, token_cross_entropy, token_divergence


def _logits(seed: int, shape=(3, 5, 11)) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen) * 2


def _kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """KL(a || b) per position through F.kl_div(input=log b, target=log a)."""
    return F.kl_div(log_b, log_a, reduction="none", log_target=True).sum(-1)


@pytest.mark.parametrize("direction", ["reverse", "forward", "jsd"])
def test_zero_for_identical_distributions(direction):
    logits = _logits(0)
    div = token_divergence(logits, logits.clone(), direction)
    assert torch.allclose(div, torch.zeros_like(div), atol=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_reverse_and_forward_equal_kl_div(temperature):
    p, q = _logits(1), _logits(2)
    log_p, log_q = F.log_softmax(p / temperature, -1), F.log_softmax(q / temperature, -1)
    rev = token_divergence(p, q, "reverse", temperature)
    fwd = token_divergence(p, q, "forward", temperature)
    assert torch.allclose(rev, _kl(log_p, log_q), atol=1e-5)
    assert torch.allclose(fwd, _kl(log_q, log_p), atol=1e-5)
    assert not torch.allclose(rev, fwd, atol=1e-3)  # the directions really differ
    assert (rev > 0).all() and (fwd > 0).all()


@pytest.mark.parametrize("beta", [0.5, 0.2])
def test_jsd_equals_kl_div_to_the_mixture(beta):
    p, q = _logits(3), _logits(4)
    prob_p, prob_q = F.softmax(p, -1), F.softmax(q, -1)
    log_m = torch.log(beta * prob_p + (1 - beta) * prob_q)
    expected = beta * _kl(prob_p.log(), log_m) + (1 - beta) * _kl(prob_q.log(), log_m)
    got = token_divergence(p, q, "jsd", beta=beta)
    assert torch.allclose(got, expected, atol=1e-5)
    if beta == 0.5:
        assert (got <= math.log(2) + 1e-6).all()  # the JSD's upper bound


def test_temperature_changes_the_value():
    p, q = _logits(5), _logits(6)
    assert not torch.allclose(token_divergence(p, q, temperature=1.0), token_divergence(p, q, temperature=3.0))


def test_masking_ignores_masked_positions():
    p, q = _logits(7), _logits(8)
    labels = torch.randint(0, 11, (3, 5), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[0, :2] = False
    mask[2, 4] = False
    sums = method_sums("ka", p, labels, mask, q, ce_weight=0.5)
    q2 = q.clone()
    q2[0, :2] = 100 * torch.randn(2, 11)  # garbage where masked must not matter
    p2 = p.clone()
    p2[2, 4] = -p2[2, 4]
    sums2 = method_sums("ka", p2, labels, mask, q2, ce_weight=0.5)
    assert sums.tokens == 12 == sums2.tokens
    assert torch.allclose(sums.loss, sums2.loss)
    kl = token_divergence(p, q)[mask].sum()
    ce = F.cross_entropy(p[mask], labels[mask], reduction="sum")
    assert torch.allclose(sums.kl, kl) and torch.allclose(sums.ce, ce, atol=1e-5)
    assert torch.allclose(sums.loss, kl + 0.5 * ce, atol=1e-5)


def test_cross_entropy_matches_torch():
    p = _logits(9)
    labels = torch.randint(0, 11, (3, 5), generator=torch.Generator().manual_seed(1))
    expected = F.cross_entropy(p.reshape(-1, 11), labels.reshape(-1), reduction="none").view(3, 5)
    assert torch.allclose(token_cross_entropy(p, labels), expected)


@pytest.mark.parametrize("method", ["sft", "ce-rationale"])
def test_ce_methods_have_no_kl(method):
    p = _logits(10)
    labels = torch.zeros(3, 5, dtype=torch.long)
    sums = method_sums(method, p, labels, torch.ones(3, 5, dtype=torch.bool))
    assert float(sums.kl) == 0.0 and torch.allclose(sums.loss, sums.ce)


@pytest.mark.parametrize("direction", ["reverse", "forward", "jsd"])
def test_gradient_reaches_only_the_student(direction):
    student = _logits(11).requires_grad_(True)
    target = _logits(12).requires_grad_(True)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1] = False
    sums = method_sums("ka", student, torch.zeros(3, 5, dtype=torch.long), mask, target, direction=direction)
    sums.loss.backward()
    assert target.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert student.grad[1].abs().sum() == 0  # masked positions get no gradient


def test_ka_without_target_is_an_error():
    with pytest.raises(ValueError, match="target"):
        method_sums("ka", _logits(0), torch.zeros(3, 5, dtype=torch.long), torch.ones(3, 5, dtype=torch.bool))


def test_unknown_direction_is_an_error():
    with pytest.raises(ValueError, match="direction"):
        token_divergence(_logits(0), _logits(1), "sideways")
