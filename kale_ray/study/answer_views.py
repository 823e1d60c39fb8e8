"""Per answer token of a training run's own tokenised rows: the plain view's cross-entropy on the gold
answer, the with-rationale view's, and KL(p||q) between them, for one model.

It says whether training moved the plain view (what is scored at test time) toward the gold answer, or
only toward the rationale view; the pre-check (kale_ray.study.precheck) and scripts/answer_views.py
both read it. The model is loaded where this runs: call it inside a Ray task (`answer_views_remote`),
not in a driver.
"""

from __future__ import annotations

from typing import Any

KEYS = ("ce_plain", "ce_rationale", "kl_plain_to_rationale", "top1_plain", "top1_rationale")


def answer_view_stats(model_path: str, rows: list[dict[str, Any]], threads: int = 1) -> dict[str, float]:
    """Means per answer token over `rows` (TOKEN_SCHEMA: student_ids, target_ids, answer_len); a row
    without a target view (SFT's tokens) counts in the plain view's figures only."""
    import torch

    from kale_ray.engines.loading import load_causal_lm

    torch.set_num_threads(max(1, threads))
    model = load_causal_lm(model_path, dtype="float32")
    sums = dict.fromkeys(KEYS, 0.0)
    tokens = with_target = 0
    with torch.no_grad():
        for row in rows:
            span = int(row["answer_len"])
            labels = torch.tensor(list(row["student_ids"])[-span:])
            lp = model(torch.tensor([list(row["student_ids"])])).logits[0, -span - 1:-1].float().log_softmax(-1)
            sums["ce_plain"] -= lp.gather(1, labels[:, None]).sum().item()
            sums["top1_plain"] += (lp.argmax(-1) == labels).sum().item()
            tokens += span
            if len(row["target_ids"]):
                lq = model(torch.tensor([list(row["target_ids"])])).logits[0, -span - 1:-1].float().log_softmax(-1)
                sums["ce_rationale"] -= lq.gather(1, labels[:, None]).sum().item()
                sums["kl_plain_to_rationale"] += (lp.exp() * (lp - lq)).sum().item()
                sums["top1_rationale"] += (lq.argmax(-1) == labels).sum().item()
                with_target += span
    plain = {k: round(sums[k] / tokens, 4) for k in ("ce_plain", "top1_plain")} if tokens else {}
    target = {k: round(sums[k] / with_target, 4) for k in ("ce_rationale", "kl_plain_to_rationale", "top1_rationale")} \
        if with_target else {}
    return {**plain, **target, "answer_tokens": tokens}


def answer_views_remote(jobs: dict[str, tuple[str, list[dict[str, Any]]]], num_cpus: float = 1.0
                        ) -> dict[str, dict[str, float]]:
    """`answer_view_stats` of each (model path, rows) job, each in a Ray task of its own (a node with the
    model; the driver loads none)."""
    import ray

    task = ray.remote(num_cpus=num_cpus)(answer_view_stats)
    refs = {name: task.remote(path, rows, max(1, int(num_cpus))) for name, (path, rows) in jobs.items()}
    return {name: ray.get(ref) for name, ref in refs.items()}
