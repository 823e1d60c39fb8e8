"""Entity linking by normalised alias matching (docs/method.md, Stage 1, step 1).

Text and every label/alias are normalised the same way (accents stripped, lower case, punctuation to
spaces). A question is scanned left to right for the longest alias starting at each token (multi-word
aliases win over their parts), with a plural -> singular retry on the last word. Mentions made only of
stop-words are ignored, and hub nodes (degree above a share of all nodes) are not linked from question
text, because a search starting at a hub fans out over the whole graph. Concept nodes link like named
ones: "white" links to WordNet's colour synsets. An answer links first as a whole string (hubs
allowed: a hub is a fine target), else by the mentions inside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kale_ray.kg.normalize import normalize, singular
from kale_ray.kg.store import KG

__all__ = ["STOP_WORDS", "Linker", "Mention", "link_coverage", "normalize", "singular"]

STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
now of off on once only or other our ours ourselves out over own same she should so some such than that the
their theirs them themselves then there these they this those through to too under until up very was we
were what when where which while who whom why will with would you your yours yourself yourselves
s t d ll m o re ve y one two also may might must shall us get got make made many much way use used
following best likely true false answer question statement option choice called known
""".split())

@dataclass(frozen=True)
class Mention:
    start: int   # token offsets in the normalised text
    end: int
    text: str
    ids: tuple[int, ...]


class Linker:
    """Links text to entities through the KG's alias index (`kale_ray/kg/alias.py`): built once with the
    artifact and memory-mapped, so a linker costs no per-name memory in its process."""

    def __init__(self, kg: KG, hub_share: float = 0.01, min_hub_degree: int = 50, candidates: int = 2) -> None:
        self.kg = kg
        self.candidates = candidates
        threshold = max(hub_share * kg.num_entities, min_hub_degree)
        self.hubs = _Hubs(kg.adjacency.indptr, threshold)
        self.index = kg.alias_index
        self.max_tokens = self.index.max_tokens

    def lookup(self, norm: str) -> list[int]:
        return self.lookup_many([norm])[norm]

    def lookup_many(self, norms: list[str]) -> dict[str, list[int]]:
        """Each name's ranked ids, else its plural -> singular retry's (one index search per round)."""
        found = dict(zip(norms, self.index.get_many(norms), strict=True))
        retry: dict[str, str] = {}
        for norm, ids in found.items():
            if ids is None:
                words = norm.split(" ")
                single = singular(words[-1])
                if single:
                    retry[norm] = " ".join([*words[:-1], single])
        if retry:
            again = dict(zip(retry.values(), self.index.get_many(list(retry.values())), strict=True))
            for norm, single in retry.items():
                found[norm] = again[single]
        return {norm: ids.tolist() if ids is not None else [] for norm, ids in found.items()}

    def exact(self, text: str) -> list[int]:
        """The entity a whole string names: its key verbatim, else its normalised alias."""
        eid = self.kg.id_of(text.strip())
        if eid is not None:
            return [eid]
        norm = normalize(text)
        if not norm or all(w in STOP_WORDS for w in norm.split()):
            return []
        return self.lookup(norm)[: self.candidates]

    def mentions(self, text: str, allow_hubs: bool = False) -> list[Mention]:
        tokens = normalize(text).split()
        spans = {" ".join(tokens[i:j]) for i in range(len(tokens))
                 for j in range(i + 1, min(len(tokens), i + self.max_tokens) + 1)
                 if not all(w in STOP_WORDS for w in tokens[i:j])}
        known = self.lookup_many(sorted(spans))
        found: list[Mention] = []
        i = 0
        while i < len(tokens):
            for j in range(min(len(tokens), i + self.max_tokens), i, -1):
                words = tokens[i:j]
                if all(w in STOP_WORDS for w in words):
                    continue
                ids = [e for e in known[" ".join(words)] if allow_hubs or not self.hubs[e]]
                if ids:
                    found.append(Mention(i, j, " ".join(words), tuple(ids[: self.candidates])))
                    i = j
                    break
            else:
                i += 1
        return found

    def link_text(self, text: str, allow_hubs: bool = False) -> list[int]:
        return _unique(e for m in self.mentions(text, allow_hubs) for e in m.ids)

    def link_answer(self, text: str) -> list[int]:
        return self.exact(text) or self.link_text(text, allow_hubs=True)

    def link_question(self, question: str, topic: str | None = None) -> list[int]:
        """The topic entity when the benchmark names one (MetaQA), else the question's mentions."""
        if topic:
            ids = self.exact(topic)
            if ids:
                return ids
        return self.link_text(question)


class _Hubs:
    """`hubs[e]`: is e's degree above the threshold; read from the mapped CSR, no per-node array."""

    def __init__(self, indptr: np.ndarray, threshold: float) -> None:
        self.indptr, self.threshold = indptr, threshold

    def __getitem__(self, e: int) -> bool:
        return bool(self.indptr[e + 1] - self.indptr[e] > self.threshold)


def _unique(ids) -> list[int]:  # noqa: ANN001
    seen: dict[int, None] = {}
    for e in ids:
        seen.setdefault(int(e), None)
    return list(seen)


def link_coverage(kg: KG, rows: list[dict], kg_cfg, show: int = 0) -> tuple[dict, list[dict]]:  # noqa: ANN001
    """Per benchmark: rows, share with >= 1 question entity, >= 1 answer entity, and both."""
    linker = Linker(kg, kg_cfg.max_entity_degree_share, kg_cfg.min_hub_degree, kg_cfg.link_candidates)
    report: dict[str, dict] = {}
    examples: list[dict] = []
    for row in rows:
        q = linker.link_question(row["question"], row.get("topic"))
        answers = [a for a in (row.get("answers") or []) if a] or [row["gold_text"]]
        a = _unique(e for ans in answers for e in linker.link_answer(ans))
        c = report.setdefault(row["benchmark"], {"rows": 0, "with_q_entity": 0, "with_a_entity": 0, "linked": 0})
        c["rows"] += 1
        c["with_q_entity"] += bool(q)
        c["with_a_entity"] += bool(a)
        c["linked"] += bool(q) and bool(a)
        if len(examples) < show:
            examples.append({"question": row["question"], "answer": answers[0],
                             "q_entities": [f"{kg.keys[e]} ({kg.labels[e]})" for e in q],
                             "a_entities": [f"{kg.keys[e]} ({kg.labels[e]})" for e in a]})
    for c in report.values():
        for key in ("with_q_entity", "with_a_entity", "linked"):
            c[f"{key}_share"] = round(c[key] / c["rows"], 4) if c["rows"] else 0.0
    return report, examples
