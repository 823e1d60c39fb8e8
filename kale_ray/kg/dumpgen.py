"""A generated dump in the Wikidata JSON format, for tests and `bench/kg_scale.py` (no real dump here).

Items `Q1..Qn` with English labels and aliases drawn from a fixed pseudo-word vocabulary (so names
collide as real ones do), power-law claim counts per item (Pareto) and power-law objects (low ids are
hubs), about 10% non-item values (dates) that the build must skip, and `P1..Pk` property entities
naming the relations. Also writes questions that mention item labels, for linking throughput.
"""

from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path

import numpy as np

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "zen", "dar", "bel", "cor", "fin", "gal", "hos", "ith",
             "jun", "kel", "lum", "mar", "nor", "ost", "pra", "qui", "ros", "sil", "tor", "urn", "val", "wen", "xa"]


def vocabulary(size: int, rng: np.random.Generator) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES, size=int(rng.integers(2, 4)))))
    return sorted(words)


def _statement(prop: str, qid: int) -> dict:
    return {"mainsnak": {"snaktype": "value", "property": prop, "datatype": "wikibase-item",
                         "datavalue": {"value": {"entity-type": "item", "numeric-id": qid, "id": f"Q{qid}"},
                                       "type": "wikibase-entityid"}}, "type": "statement", "rank": "normal"}


def _date(prop: str) -> dict:
    return {"mainsnak": {"snaktype": "value", "property": prop, "datatype": "time",
                         "datavalue": {"value": {"time": "+1952-03-11T00:00:00Z"}, "type": "time"}},
            "type": "statement", "rank": "normal"}


def write_dump(path: Path, items: int, statements_per_item: float = 10.0, properties: int = 200,
               seed: int = 0, malformed: int = 0) -> dict[str, int]:
    """Write the dump (.json, .json.gz or .json.bz2 by suffix); returns what it wrote."""
    rng = np.random.default_rng(seed)
    words = vocabulary(min(20_000, max(200, items // 20)), rng)  # 27,900 syllable words exist
    alpha = 1.6
    scale = statements_per_item * (alpha - 1) / alpha
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else bz2.open if path.suffix == ".bz2" else open
    prop_weights = 1.0 / np.arange(1, properties + 1)
    prop_weights /= prop_weights.sum()
    statements = dates = 0
    with opener(path, "wt", encoding="utf-8") as fh:
        fh.write("[\n")
        chunk = 10_000
        for lo in range(1, items + 1, chunk):
            hi = min(items + 1, lo + chunk)
            k = np.minimum(2_000, np.floor(scale * (1 + rng.pareto(alpha, hi - lo)))).astype(np.int64)
            total = int(k.sum())
            tails = np.minimum(items, 1 + np.floor(items * rng.random(total) ** 3)).astype(np.int64)
            props = rng.choice(properties, size=total, p=prop_weights) + 1
            is_date = rng.random(total) < 0.1
            n_words = rng.integers(1, 4, hi - lo)
            at = 0
            lines = []
            for j, qid in enumerate(range(lo, hi)):
                label = " ".join(words[int(w)] for w in rng.integers(0, len(words), int(n_words[j]))).title()
                claims: dict[str, list] = {}
                for s in range(at, at + int(k[j])):
                    prop = f"P{int(props[s])}"
                    claims.setdefault(prop, []).append(_date(prop) if is_date[s] else _statement(prop, int(tails[s])))
                dates += int(is_date[at: at + int(k[j])].sum())
                at += int(k[j])
                entity = {"type": "item", "id": f"Q{qid}",
                          "labels": {"en": {"language": "en", "value": label}},
                          "descriptions": {"en": {"language": "en", "value": f"item {qid}"}},
                          "aliases": {"en": [{"language": "en", "value": words[int(rng.integers(len(words)))]}]}
                          if qid % 3 == 0 else {},
                          "claims": claims}
                lines.append(json.dumps(entity, separators=(",", ":")))
            statements += total
            fh.write(",\n".join(lines) + ",\n")
        for p in range(1, properties + 1):
            fh.write(json.dumps({"type": "property", "id": f"P{p}", "labels": {"en": {"language": "en",
                                                                                   "value": f"relation {p}"}},
                                 "claims": {}}) + ",\n")
        for _ in range(malformed):
            fh.write("{not json},\n")
        fh.write(json.dumps({"type": "item", "id": "Q0", "labels": {}, "claims": {}}) + "\n]\n")
    return {"items": items + 1, "properties": properties, "statements": statements - dates,
            "non_item_values": dates, "malformed": malformed}


def questions(labels: list[str], count: int, seed: int = 0) -> list[str]:
    """Questions mentioning one or two of the given labels amid stop-words and unknown words."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(labels), size=(count, 2))
    return [f"Which of the following is true about {labels[a]} and the {labels[b]} it was made with?"
            for a, b in picks]
