"""Known/unknown labels from the semantic entropy of sampled answers (KA2L).

Several answers are sampled per question at a temperature above zero and grouped by meaning; the
semantic entropy is the entropy of the groups' frequencies. A model that knows the answer gives the
same one each time (low entropy); one that guesses spreads over several (high entropy).

Multiple choice: the groups are the options. A 135M model cannot reliably write an option letter, so a
sampled answer is drawn from the model's own distribution over the options instead: one scoring pass
gives each option's log-likelihood as a continuation of the question (the same scores evaluation
uses), and `samples` options are drawn from softmax(ll / T). That is exactly the distribution of the
model's answer when it must answer with one of the options' texts, tempered by T, so the draws are
samples of the model's answer, only cheaper than generating and matching text. Each row has its own
generator, seeded from (seed, row id), so labels do not depend on batching or row order.

Generative rows: `samples` generations decoded as one batch (HFEngine.generate_batch with
temperature, one seed per sample), grouped by their normalised extracted answer.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from kale_ray.data.format import answer_text, prompt_text

LABEL_FIELDS = [
    pa.field("id", pa.string()),
    pa.field("kind", pa.string()),            # "mc" | "generative" | "error" (prompt too long: no label)
    pa.field("answers", pa.list_(pa.string())),  # the sampled answers' groups, in sampling order
    pa.field("n_groups", pa.int64()),
    pa.field("entropy", pa.float64()),
    pa.field("known", pa.bool_()),
]


def semantic_entropy(groups: Sequence[str]) -> float:
    """Entropy (nats) of the frequencies of the groups in `groups` (one entry per sampled answer)."""
    if not groups:
        raise ValueError("semantic entropy of no samples")
    n = len(groups)
    return float(-sum((c / n) * math.log(c / n) for c in Counter(groups).values()))


def answer_group(text: str) -> str:
    """The meaning group of a generated answer: its extracted answer, normalised."""
    from kale_ray.data.answers import extract_answer, normalize

    return normalize(extract_answer(text))


def row_seed(seed: int, row_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{row_id}".encode()).digest()[:8], "little")


def sample_options(lls: Sequence[float], samples: int, temperature: float, seed: int) -> list[int]:
    """`samples` option indices drawn from softmax(ll / T) with a generator seeded by `seed`."""
    logits = np.asarray(lls, dtype=np.float64) / temperature
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    return [int(i) for i in np.random.default_rng(seed).choice(len(probs), size=samples, p=probs)]


def is_multiple_choice(row: dict[str, Any]) -> bool:
    return row.get("gold", -1) is not None and row.get("gold", -1) >= 0 and len(row.get("choices") or []) >= 2


def label_rows(engine: Any, rows: list[dict[str, Any]], cfg: Any) -> pa.Table:  # engine: HFEngine
    """One label row per input row: the sampled groups, their entropy and known = entropy <= threshold."""
    from kale_ray.engines.base import GenerationRequest

    seed = cfg.probe.seed if cfg.probe.seed is not None else cfg.seed
    samples, temp = cfg.probe.samples, cfg.probe.temperature
    mc = [r for r in rows if is_multiple_choice(r)]
    pairs = [(prompt_text(r["question"]), answer_text(c)) for r in mc for c in r["choices"]]
    lls = iter(ll for ll, _ in engine.loglikelihood(pairs)) if pairs else iter(())
    groups: dict[str, tuple[str, list[str]]] = {}
    for r in mc:
        row_lls = [next(lls) for _ in r["choices"]]
        picks = sample_options(row_lls, samples, temp, row_seed(seed, r["id"]))
        groups[r["id"]] = ("mc", [str(i) for i in picks])
    for r in rows:
        if r["id"] in groups:
            continue
        ids = engine.encode(prompt_text(r["question"]))
        base = row_seed(seed, r["id"])
        try:
            gens = engine.generate_batch([
                GenerationRequest(ids, cfg.probe.max_new_tokens, temperature=temp, seed=(base + k) % 2**63,
                                  stop=["\n\n", "\nQuestion:"]) for k in range(samples)])
        except ValueError as err:  # ContextLengthError: the prompt does not fit; counted, never labelled
            print(f"probe labels: row {r['id']}: {err}", flush=True)
            groups[r["id"]] = ("error", [])
            continue
        groups[r["id"]] = ("generative", [answer_group(g.text) for g in gens])
    out: dict[str, list[Any]] = {f.name: [] for f in LABEL_FIELDS}
    for r in rows:
        kind, answers = groups[r["id"]]
        entropy = semantic_entropy(answers) if answers else None
        for name, value in (("id", r["id"]), ("kind", kind), ("answers", answers),
                            ("n_groups", len(set(answers))), ("entropy", entropy),
                            ("known", None if entropy is None else entropy <= cfg.probe.threshold)):
            out[name].append(value)
    return pa.table(out, schema=pa.schema(LABEL_FIELDS))


def apply_threshold(table: pa.Table, threshold: float) -> pa.Table:
    """`known` recomputed from the stored entropies, so a new threshold needs no new sampling."""
    known = [None if e is None else e <= threshold for e in table.column("entropy").to_pylist()]
    return table.set_column(table.schema.get_field_index("known"), "known", pa.array(known, pa.bool_()))
