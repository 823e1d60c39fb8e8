"""known&incorrect as the paper frames it: the model knows the fact an item needs, yet answers wrongly.

An item's fact is its key fact (`kale_ray.kg.facts`): the last edge of its shortest KG path, the
triple that reaches the answer entity. The model is asked it directly, in the training format:

    Question: Complete the fact: circulatory system part holonym ___.
    Answer: body                     (against three other part-holonym wholes of the KG)

and scored like a benchmark item (each option's log-likelihood after the question, through the same
scorer: in process or through Serve). The model *knows* the fact when acc_norm picks the answer entity.
Items without a usable fact (no path, or no distractor) are *not covered* and left out.

Reported per model and benchmark:
- coverage: covered items / all items;
- known share: known / covered;
- known&incorrect: among the known items, the share the model answers incorrectly on the benchmark;
- the reference line, 1 - accuracy on the covered items: what known&incorrect would be if knowing the
  fact said nothing about answering the question.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from kale_ray.eval.metrics import mc_scores


def fact_question(fact: dict[str, Any]) -> str:
    """The direct question of a key fact: its triple as a sentence with the asked end blanked."""
    rel = fact["relation_label"]
    if fact["asks"] == "tail":
        return f"Complete the fact: {fact['given']} {rel} ___."
    return f"Complete the fact: ___ {rel} {fact['given']}."


def load_facts(paths: Any, kg_dir: Path | str | None = None, distractors: int = 3, seed: int = 0
               ) -> dict[str, dict[str, Any]]:
    """item id -> key fact (a dict), from a paths artifact (its directory or a table with `id` and
    `paths`) and the KG its paths were searched in: `kg_dir`, else the one the artifact's manifest
    names. Items without a usable fact are absent."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from kale_ray.artifacts import Manifest, read_parts
    from kale_ray.kg.facts import FactBuilder
    from kale_ray.kg.store import load_kg

    table = paths
    if not isinstance(paths, pa.Table):
        path = Path(paths)
        if kg_dir is None:
            manifest = Manifest.read(path)
            kg_dir = (manifest.inputs or {}).get("kg_dir") if manifest else None
        table = read_parts(path) if path.is_dir() else pq.read_table(path)
    if "paths" not in table.column_names:
        raise ValueError("known&incorrect needs a paths artifact (the paths or paths-test stage): "
                         f"no `paths` column in {table.column_names}")
    if kg_dir is None:
        raise ValueError("known&incorrect: the KG of the paths is unknown (give eval.kg)")
    builder = FactBuilder(load_kg(Path(kg_dir)), distractors, seed)
    facts = {}
    for row in table.select(["id", "paths"]).to_pylist():
        fact = builder.fact(row["id"], row["paths"])
        if fact is not None:
            facts[row["id"]] = fact.as_dict()
    return facts


def facts_hash(facts: dict[str, dict[str, Any]]) -> str:
    """Changes when any item's question or options change, so evaluation redoes its pairs."""
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def known_checks(scorer: Any, rows: list[dict[str, Any]], facts: dict[str, dict[str, Any]], fmt: Any
                 ) -> list[dict[str, Any] | None]:
    """Per row: the fact check (question, options, log-likelihoods, whether acc_norm picked the answer),
    or None for a row without a fact. All questions go to the scorer in one call."""
    asked = [(row, facts.get(row["id"])) for row in rows]
    pairs = [(fmt.prompt(fact_question(f)), fmt.answer(c)) for _, f in asked if f for c in f["choices"]]
    lls = iter(scorer.loglikelihood(pairs)) if pairs else iter(())
    out: list[dict[str, Any] | None] = []
    for _, fact in asked:
        if fact is None:
            out.append(None)
            continue
        scores = mc_scores([next(lls) for _ in fact["choices"]], fact["choices"], fact["gold"])
        out.append({"question": fact_question(fact), "choices": fact["choices"], "gold": fact["gold"],
                    "triple": [fact["head"], fact["relation"], fact["tail"]], "lls": scores["lls"],
                    "pred_norm": scores["pred_norm"], "known": bool(scores["acc_norm"])})
    return out


def shares(known: list[bool | None], correct: list[float]) -> dict[str, float | int | None]:
    """Coverage, the known share, known&incorrect among the known items, and the reference line
    (1 - accuracy on the covered items); `None` where a share has no items under it."""
    covered = [(k, c) for k, c in zip(known, correct, strict=True) if k is not None]
    n, n_cov = len(known), len(covered)
    n_known = sum(1 for k, _ in covered if k)
    ki = sum(1 for k, c in covered if k and c <= 0)
    wrong = sum(1 for _, c in covered if c <= 0)
    return {"items": n, "covered": n_cov, "known": n_known, "known_incorrect_items": ki, "incorrect_covered": wrong,
            "coverage": n_cov / n if n else None, "known_share": n_known / n_cov if n_cov else None,
            "known_incorrect": ki / n_known if n_known else None,
            "reference": wrong / n_cov if n_cov else None}
