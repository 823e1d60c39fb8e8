"""An item's key fact, read off its KG paths, with distractor entities: what known&incorrect asks.

The paths stage walks from a question entity to an answer entity, shortest path first. The *key fact*
of an item is the last edge of its shortest path: the stored triple that reaches the answer entity.
Asked as a direct question, the triple's other end and its relation are given and the answer entity is
the gold option. Its distractors are other entities in the same role of the same relation (other
objects of `hypernym` for "dog hypernym ___", other subjects for "___ directed by James Cameron"),
so they are of the answer's kind; an entity that makes the fact true as well (a second hypernym of the
same subject) or shares the answer's label is never one. They are drawn with a generator seeded by the
item id, so every model is asked the same question with the same options.

The item's own benchmark options are not used as distractors on purpose: the fact check must not
repeat the benchmark question, or "known" and "correct" would be the same measurement.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from kale_ray.kg.store import KG

_TRIES = 64  # candidate draws per distractor wanted, before settling for fewer


@dataclass(frozen=True)
class KeyFact:
    """One stored triple with the answer entity at one end (`asks`: which end is asked for), and the
    labels of the options the question offers: the answer at index `gold`, distractors elsewhere."""

    head: str
    relation: str
    tail: str
    asks: str  # "tail" (subject relation ___) or "head" (___ relation object)
    given: str  # the label of the end that is given
    relation_label: str
    choices: list[str]
    gold: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def key_edge(paths_json: str | None) -> tuple[str, str, str, bool] | None:
    """(from, relation, answer, backward) of the shortest path's last step, or None without a path."""
    paths = json.loads(paths_json) if paths_json else []
    paths = [p for p in paths if p]
    if not paths:
        return None
    head, rel, tail, backward = min(paths, key=len)[-1]
    return head, rel, tail, bool(backward)


def _rng(seed: int, item_id: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


class FactBuilder:
    """Key facts of many items from one KG; the edges of each relation are indexed once."""

    def __init__(self, kg: KG, distractors: int = 3, seed: int = 0) -> None:
        self.kg, self.n, self.seed = kg, distractors, seed
        relations = np.asarray(kg.relations)
        order = np.argsort(relations, kind="stable")
        bounds = np.searchsorted(relations[order], np.arange(len(kg.relation_keys) + 1))
        self._edges = {r: order[bounds[r]:bounds[r + 1]] for r in range(len(kg.relation_keys))}
        self._heads, self._tails = np.asarray(kg.heads), np.asarray(kg.tails)

    def fact(self, item_id: str, paths_json: str | None) -> KeyFact | None:
        """The item's key fact as a question with options, or None (no path, an entity or relation the
        KG lacks, or no distractor to be found)."""
        edge = key_edge(paths_json)
        if edge is None:
            return None
        kg = self.kg
        start, rel_key, answer, backward = edge
        rel = kg.relation_index.get(rel_key)
        a_id, s_id = kg.id_of(answer), kg.id_of(start)
        if rel is None or a_id is None or s_id is None:
            return None
        # Stored as start -> answer (the answer is the tail) unless the walk went against the triple.
        asks = "head" if backward else "tail"
        head, tail = (answer, start) if backward else (start, answer)
        edges = self._edges[rel]
        given_id = s_id
        role, other = (self._heads, self._tails) if asks == "head" else (self._tails, self._heads)
        true_ids = set(role[edges[other[edges] == given_id]].tolist()) | {a_id}
        answer_label = kg.labels[a_id]
        seen = {answer_label.lower(), kg.labels[given_id].lower()}
        rng = _rng(self.seed, item_id)
        picked: list[str] = []
        for pos in rng.integers(0, len(edges), size=_TRIES * self.n) if len(edges) else []:
            cand = int(role[edges[pos]])
            label = kg.labels[cand]
            if cand in true_ids or not label.strip() or label.lower() in seen:
                continue
            seen.add(label.lower())
            picked.append(label)
            if len(picked) == self.n:
                break
        if not picked:
            return None
        gold = int(rng.integers(0, len(picked) + 1))
        choices = [*picked[:gold], answer_label, *picked[gold:]]
        return KeyFact(head=head, relation=rel_key, tail=tail, asks=asks, given=kg.labels[given_id],
                       relation_label=(kg.relation_labels[rel] or rel_key).replace("_", " "),
                       choices=choices, gold=gold)
