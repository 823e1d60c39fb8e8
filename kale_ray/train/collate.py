"""Tokenising the two views of an example and padding them so the answer positions line up.

Both views end with the same answer tokens (tokenised once, on their own), so with LEFT padding the
answer occupies the last `answer_len` positions of every row of either view: the logits that predict
it are `logits[:, -A-1:-1]` in both, whatever the prompt lengths. Truncation never touches the answer:
the rationale is cut first (from its end), then the prompt loses its oldest tokens; a row whose answer
alone does not fit is dropped. Every such event is counted for the stage's manifest.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from kale_ray.data.format import CLOZE, PromptFormat
from kale_ray.methods import TRAINER_METHODS

TRAINABLE_STATUS = ("ok", "fallback")

TOKEN_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("student_ids", pa.list_(pa.int32())),  # prompt + answer, the trained view
    ("target_ids", pa.list_(pa.int32())),   # prompt' + answer (ka only; empty otherwise)
    ("answer_len", pa.int32()),
])


@dataclass
class TokenReport:
    """What tokenisation kept, cut and dropped."""

    rows_in: int = 0
    rows_used: int = 0
    counts: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, int]:
        return {"rows_in": self.rows_in, "rows_used": self.rows_used, **dict(sorted(self.counts.items()))}


@dataclass
class View:
    ids: list[int]
    rationale_truncated: bool = False
    prompt_truncated: bool = False


class AnswerTooLong(ValueError):
    """The answer alone leaves no room for a prompt token within max_length."""


def encode_view(tokenizer: Any, question: str, answer_ids: list[int], max_length: int,
                rationale: str | None = None, fmt: PromptFormat = CLOZE) -> View:
    """prompt (+ rationale) + answer in at most max_length tokens, cutting the rationale first."""
    budget = max_length - len(answer_ids)
    if budget < 1:
        raise AnswerTooLong(f"answer has {len(answer_ids)} tokens, max_length is {max_length}")
    prompt = fmt.prompt(question, rationale)
    enc = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    view = View(ids)
    if len(ids) > budget and rationale and rationale.strip():
        start = prompt.index(rationale.strip())
        end = start + len(rationale.strip())
        inside = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if a < end and b > start]
        cut = min(len(ids) - budget, len(inside))
        last = inside[-1] + 1
        ids = ids[: last - cut] + ids[last:]
        view.rationale_truncated = True
    if len(ids) > budget:
        ids = ids[len(ids) - budget:]
        view.prompt_truncated = True
    view.ids = ids + list(answer_ids)
    return view


def tokenize_rows(tokenizer: Any, table: pa.Table, method: str, max_length: int,
                  fmt: PromptFormat = CLOZE) -> tuple[pa.Table, TokenReport]:
    """Rows (SCHEMA columns, plus `rationale`/`status` for ka and ce-rationale) -> TOKEN_SCHEMA rows,
    in `fmt`'s format (the cloze one, or the model's chat template: data/format.py).

    sft: question -> answer. ka: student = question -> answer, target = question + rationale -> answer.
    ce-rationale (the w/o-KA ablation): CE on the answer given the with-rationale prompt.
    """
    if method not in TRAINER_METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {TRAINER_METHODS}")
    needs_rationale = method != "sft"
    report = TokenReport()
    out: dict[str, list[Any]] = {name: [] for name in TOKEN_SCHEMA.names}
    for row in table.to_pylist():
        report.rows_in += 1
        rationale = row.get("rationale") if needs_rationale else None
        if needs_rationale:
            status = row.get("status", "ok")
            if status not in TRAINABLE_STATUS:
                report.counts[f"skipped_status_{status}"] += 1
                continue
            if not rationale or not str(rationale).strip():
                report.counts["skipped_no_rationale"] += 1
                continue
        answer_ids = list(tokenizer(fmt.answer(row["gold_text"]), add_special_tokens=False)["input_ids"])
        if not answer_ids:
            report.counts["skipped_empty_answer"] += 1
            continue
        try:
            if method == "ka":
                student = encode_view(tokenizer, row["question"], answer_ids, max_length, fmt=fmt)
                target = encode_view(tokenizer, row["question"], answer_ids, max_length, rationale, fmt)
            else:
                student = encode_view(tokenizer, row["question"], answer_ids, max_length, rationale, fmt)
                target = None
        except AnswerTooLong:
            report.counts["dropped_answer_too_long"] += 1
            continue
        views = [v for v in (student, target) if v is not None]
        if any(v.rationale_truncated for v in views):
            report.counts["rationale_truncated"] += 1
        if any(v.prompt_truncated for v in views):
            report.counts["prompt_truncated"] += 1
        out["id"].append(row["id"])
        out["student_ids"].append(student.ids)
        out["target_ids"].append(target.ids if target else [])
        out["answer_len"].append(len(answer_ids))
        report.rows_used += 1
    return pa.Table.from_pydict(out, schema=TOKEN_SCHEMA), report


def left_pad(sequences: list[list[int]], pad_id: int) -> dict[str, Any]:
    """input_ids, attention_mask and position_ids (counted from each row's first real token)."""
    import torch

    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, seq in enumerate(sequences):
        if seq:
            ids[i, length - len(seq):] = torch.as_tensor(seq, dtype=torch.long)
            mask[i, length - len(seq):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": ids, "attention_mask": mask, "position_ids": positions}


def shared_prefix_len(student: list[int], target: list[int], answer_len: int) -> int:
    """How many leading token ids the two views have in common, leaving the target at least the
    answer and the token before it (whose logits predict the answer's first token).

    Counted on the ids themselves, so sharing is exact whatever the tokenizer did at the boundary; a
    row whose prompt was cut from the left in one view only gets 0 (no sharing, full target pass).
    """
    limit = min(len(student), len(target) - answer_len - 1)
    n = 0
    while n < limit and student[n] == target[n]:
        n += 1
    return n


def shared_target_view(students: list[list[int]], targets: list[list[int]], answer_len: list[int],
                       pad_id: int) -> dict[str, Any] | None:
    """The target view as a continuation of the student view's key/value cache, packed into one row.

    Under causal attention the keys/values of the common prefix are the same in both views (same
    weights, tokens and positions), so the no-grad target pass needs only each row's suffix
    (rationale + answer). The suffixes are packed end to end in a single row (no padding: their
    lengths vary a lot once the prefix is gone), and so are the rows' prefix cache columns (row i's
    prefix sits at columns [W - len_i, W - len_i + P_i) of the left-padded student batch of width W).
    A 4D mask lets each suffix token see its own row's prefix and, causally, its own row's suffix;
    positions continue at P_i. `keep` indexes the packed positions whose logits predict each row's
    answer, laid out like `answer_logits` ([B, span], right-aligned). None when no row shares anything.
    """
    import torch

    prefix = [shared_prefix_len(s, t, n) for s, t, n in zip(students, targets, answer_len, strict=True)]
    if not any(prefix):
        return None
    width, span = max(len(s) for s in students), max(answer_len)
    suffixes = [t[p:] for t, p in zip(targets, prefix, strict=True)]
    n_prefix, n_suffix = sum(prefix), sum(len(x) for x in suffixes)
    mask = torch.zeros((n_suffix, n_prefix + n_suffix), dtype=torch.bool)
    rows, cols, positions, keep, ids = [], [], [], [], []
    p_at, s_at = 0, 0
    for i, (student, p, suffix) in enumerate(zip(students, prefix, suffixes, strict=True)):
        start, t = width - len(student), len(suffix)
        rows += [i] * p
        cols += range(start, start + p)
        ids += suffix
        positions += range(p, p + t)
        mask[s_at:s_at + t, p_at:p_at + p] = True
        mask[s_at:s_at + t, n_prefix + s_at:n_prefix + s_at + t] = torch.ones((t, t), dtype=torch.bool).tril()
        keep += [s_at + max(t - 1 - span + j, 0) for j in range(span)]
        p_at, s_at = p_at + p, s_at + t
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    return {"input_ids": as_long(ids)[None], "position_ids": as_long(positions)[None],
            "attention_mask": mask[None, None], "cache_rows": as_long(rows), "cache_cols": as_long(cols),
            "keep": as_long(keep), "prefix_len": as_long(prefix), "suffix_tokens": n_suffix}


def collate(batch: dict[str, Any], pad_id: int, with_target: bool, share_prefix: bool = False) -> dict[str, Any]:
    """A batch of TOKEN_SCHEMA rows -> padded views plus `labels`/`answer_mask` of shape [B, A].

    labels[:, j] is predicted by logits[:, -A-1+j] of either view (see `answer_logits`). With
    `share_prefix`, `shared` holds the target view as a continuation of the student's cache
    (`shared_target_view`; None when no row shares a prefix). Rows carrying a cached target
    (`target_cache.CACHE_COLUMNS`) get `cached`: its ids, log q and rest, [B, A, k] and [B, A].
    """
    import torch

    answer_len = [int(n) for n in batch["answer_len"]]
    span = max(answer_len)
    students = [list(map(int, s)) for s in batch["student_ids"]]
    student = left_pad(students, pad_id)
    labels = student["input_ids"][:, -span:].clone()
    mask = torch.zeros_like(labels, dtype=torch.bool)
    for i, n in enumerate(answer_len):
        mask[i, span - n:] = True
    result = {"student": student, "labels": labels, "answer_mask": mask, "span": span}
    if "topk_ids" in batch:
        result["cached"] = cached_target(batch, answer_len, span)
    if with_target:
        targets = [list(map(int, s)) for s in batch["target_ids"]]
        result["target"] = left_pad(targets, pad_id)
        if share_prefix:
            result["shared"] = shared_target_view(students, targets, answer_len, pad_id)
    return result


def cached_target(batch: dict[str, Any], answer_len: list[int], span: int) -> dict[str, Any]:
    """The cached q of each row, right-aligned on the answer span like `answer_logits`. Positions
    before a short answer get a uniform q over the k+1 bins: finite, and masked out of the loss."""
    import numpy as np
    import torch

    rows = [(np.stack(list(i)), np.stack(list(t)), np.asarray(r)) for i, t, r in
            zip(batch["topk_ids"], batch["topk_logprobs"], batch["rest_logprob"], strict=True)]
    k = rows[0][0].shape[-1]
    uniform = -float(np.log(k + 1))
    ids = torch.zeros((len(rows), span, k), dtype=torch.long)
    top = torch.full((len(rows), span, k), uniform)
    rest = torch.full((len(rows), span), uniform)
    for b, ((i, t, r), n) in enumerate(zip(rows, answer_len, strict=True)):
        ids[b, span - n:] = torch.as_tensor(i, dtype=torch.long)
        top[b, span - n:] = torch.as_tensor(t, dtype=torch.float32)
        rest[b, span - n:] = torch.as_tensor(r, dtype=torch.float32)
    return {"ids": ids, "top": top, "rest": rest}


def answer_logits(logits: Any, span: int) -> Any:
    """The logits that predict the last `span` tokens of a left-padded batch."""
    return logits[:, -span - 1:-1]
