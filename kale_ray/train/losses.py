"""KA divergences and cross-entropy per answer token, and their reduction by a GLOBAL token count.

Every function returns per-token values or sums; the mean is taken once, by the loop, over the answer
tokens of the whole global batch (all ranks, all accumulation micro-steps), so the loss and its
gradient do not depend on how the batch is split (verl's "global token mean").

The target (with-rationale view) is detached here as well as computed under no-grad by the caller:
the paper holds q fixed, so no gradient may flow through it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

DIRECTIONS = ("reverse", "forward", "jsd")


def token_divergence(student_logits: Any, target_logits: Any, direction: str = "reverse",
                     temperature: float = 1.0, beta: float = 0.5) -> Any:
    """Divergence summed over the vocabulary at each position: shape = logits.shape[:-1].

    reverse: KL(p || q) (the paper's printed direction), p = student, q = target.
    forward: KL(q || p).
    jsd: beta * KL(p || m) + (1 - beta) * KL(q || m), m = beta * p + (1 - beta) * q.
    Both views are softened by the same temperature (no T^2 factor).
    """
    import torch.nn.functional as F

    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; expected one of {DIRECTIONS}")
    log_p = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_q = F.log_softmax(target_logits.detach().float() / temperature, dim=-1)
    return _divergence(log_p, log_q, direction, beta)


def topk_target(target_logits: Any, k: int, temperature: float = 1.0) -> tuple[Any, Any, Any]:
    """q at temperature T reduced to its k most likely tokens plus one bucket for the rest:
    (ids [..., k], log q of each [..., k], log of the rest's mass [...]). What the target cache stores."""
    import torch
    import torch.nn.functional as F

    log_q = F.log_softmax(target_logits.detach().float() / temperature, dim=-1)
    k = min(k, log_q.shape[-1] - 1)  # the rest bucket must hold at least one token
    top, ids = log_q.topk(k, dim=-1)
    rest = torch.logsumexp(log_q.scatter(-1, ids, float("-inf")), dim=-1)
    return ids, top, rest


def topk_divergence(student_logits: Any, ids: Any, log_q_top: Any, log_q_rest: Any, direction: str = "reverse",
                    temperature: float = 1.0, beta: float = 0.5) -> Any:
    """`token_divergence` against a top-k target: both p and q are coarse-grained to the same k+1 bins
    (q's k tokens, everything else in one bucket) and the divergence is taken between those.

    By the data-processing inequality this is never above the exact divergence, and equals it when the
    rest bucket holds p and q in the same proportions token by token (docs/method.md). The student's
    rest mass is the logsumexp of its log-probs outside the k ids, computed exactly (no 1 - sum).
    """
    import torch
    import torch.nn.functional as F

    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; expected one of {DIRECTIONS}")
    log_p = F.log_softmax(student_logits.float() / temperature, dim=-1)
    ids = ids.long()
    log_p_bins = torch.cat([log_p.gather(-1, ids),
                            torch.logsumexp(log_p.scatter(-1, ids, float("-inf")), dim=-1, keepdim=True)], -1)
    log_q_bins = torch.cat([log_q_top.float(), log_q_rest.float().unsqueeze(-1)], -1).detach()
    return _divergence(log_p_bins, log_q_bins, direction, beta)


def _divergence(log_p: Any, log_q: Any, direction: str, beta: float) -> Any:
    import torch

    if direction == "reverse":
        return (log_p.exp() * (log_p - log_q)).sum(-1)
    if direction == "forward":
        return (log_q.exp() * (log_q - log_p)).sum(-1)
    log_m = torch.logsumexp(torch.stack([log_p + math.log(beta), log_q + math.log(1 - beta)]), dim=0)
    kl_p = (log_p.exp() * (log_p - log_m)).sum(-1)
    kl_q = (log_q.exp() * (log_q - log_m)).sum(-1)
    return beta * kl_p + (1 - beta) * kl_q


def token_cross_entropy(logits: Any, labels: Any) -> Any:
    """-log p(label) at each position (no temperature), shape = labels.shape."""
    import torch.nn.functional as F

    flat = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
    return flat.view(labels.shape)


def masked_sum(values: Any, mask: Any) -> Any:
    return (values * mask.to(values.dtype)).sum()


@dataclass
class LossSums:
    """Sums over this micro-batch's answer tokens; divide by the global count to get means."""

    loss: Any
    kl: Any
    ce: Any
    tokens: int


def method_sums(method: str, student_logits: Any, labels: Any, mask: Any, target_logits: Any = None, *,
                direction: str = "reverse", temperature: float = 1.0, beta: float = 0.5,
                ce_weight: float = 0.0, target_topk: tuple[Any, Any, Any] | None = None) -> LossSums:
    """ka: KL (+ ce_weight * CE); sft and ce-rationale: CE. Logits are the answer positions only.
    `target_topk` (ids, log q top, log q rest), a cached target, stands in for `target_logits`."""
    ce = masked_sum(token_cross_entropy(student_logits, labels), mask)
    tokens = int(mask.sum())
    if method == "ka":
        if target_topk is not None:
            per_token = topk_divergence(student_logits, *target_topk, direction, temperature, beta)
        elif target_logits is None:
            raise ValueError("method ka needs the target view's logits or its top-k cache")
        else:
            per_token = token_divergence(student_logits, target_logits, direction, temperature, beta)
        kl = masked_sum(per_token, mask)
        loss = kl + ce_weight * ce if ce_weight else kl
        return LossSums(loss, kl.detach(), ce.detach(), tokens)
    return LossSums(ce, ce.new_zeros(()), ce.detach(), tokens)


def global_sum(value: float | int, device: Any = None) -> float:
    """Sum a number over every rank (identity without a process group)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item())
