"""Collecting a KG from a source: keys -> dense ids, labels, aliases, triples, and skip reasons."""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kale_ray.kg.store import KG, KGTables


@dataclass
class SkipLog:
    """Lines a reader could not use: a count per reason and the first few places, for the manifest."""

    skipped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def skip(self, where: str, reason: str) -> None:
        self.skipped += 1
        self.reasons[reason] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{where}: {reason}")

    def as_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "reasons": dict(self.reasons), "examples": self.examples}


class KGBuilder:
    """Accumulates entities, relations and triples by key; every edge is kept (a multigraph)."""

    def __init__(self) -> None:
        self.entity_ids: dict[str, int] = {}
        self.labels: list[str] = []
        self.aliases: list[list[str]] = []
        self.descriptions: list[str | None] = []
        self.relation_ids: dict[str, int] = {}
        self.relation_labels: list[str] = []
        self.heads, self.relations, self.tails = array("q"), array("i"), array("q")
        self.log = SkipLog()
        self.info: dict[str, Any] = {}

    def entity(self, key: str, label: str | None = None, aliases: list[str] | None = None,
               description: str | None = None) -> int:
        """The id of `key`, created on first sight; a later label/aliases/description fills in gaps."""
        eid = self.entity_ids.get(key)
        if eid is None:
            eid = len(self.labels)
            self.entity_ids[key] = eid
            self.labels.append(label or key)
            self.aliases.append([])
            self.descriptions.append(description)
        elif label and self.labels[eid] == key:
            self.labels[eid] = label
        if description and not self.descriptions[eid]:
            self.descriptions[eid] = description
        if aliases:
            known = self.aliases[eid]
            for alias in aliases:
                if alias and alias not in known and alias != self.labels[eid]:
                    known.append(alias)
        return eid

    def relation(self, key: str, label: str | None = None) -> int:
        rid = self.relation_ids.get(key)
        if rid is None:
            rid = len(self.relation_labels)
            self.relation_ids[key] = rid
            self.relation_labels.append(label or key.replace("_", " "))
        elif label and self.relation_labels[rid] == key.replace("_", " "):
            self.relation_labels[rid] = label
        return rid

    def triple(self, head: str, relation: str, tail: str) -> None:
        self.heads.append(self.entity(head))
        self.relations.append(self.relation(relation))
        self.tails.append(self.entity(tail))

    def to_kg(self) -> KG:
        """The KG in memory, without writing an artifact."""
        import pyarrow as pa

        t = self.tables()
        return KG(path=None, keys=t.keys, labels=t.labels, relation_keys=t.relation_keys,
                  relation_labels=t.relation_labels, heads=t.heads, relations=t.relations, tails=t.tails,
                  alias_lists=pa.chunked_array([pa.array(t.aliases, pa.list_(pa.string()))]))

    def tables(self) -> KGTables:
        return KGTables(keys=list(self.entity_ids), labels=self.labels, aliases=self.aliases,
                        descriptions=self.descriptions, relation_keys=list(self.relation_ids),
                        relation_labels=self.relation_labels,
                        heads=np.frombuffer(self.heads, dtype=np.int64) if self.heads else np.zeros(0, np.int64),
                        relations=np.frombuffer(self.relations, dtype=np.int32) if self.relations
                        else np.zeros(0, np.int32),
                        tails=np.frombuffer(self.tails, dtype=np.int64) if self.tails else np.zeros(0, np.int64))


def kg_from_triples(triples: list[tuple[str, str, str]]) -> KG:
    """An in-memory KG (no artifact) from key triples: for tests, benchmarks and small experiments."""
    builder = KGBuilder()
    for head, relation, tail in triples:
        builder.triple(head, relation, tail)
    return builder.to_kg()

