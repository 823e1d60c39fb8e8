"""Paths as key triples (the artifact's form) and as sentences a rationale writer can read."""

from __future__ import annotations

from kale_ray.kg.paths import SearchResult
from kale_ray.kg.store import KG

Step = list  # [head_key, relation_key, tail_key, backward]


def path_triples(kg: KG, result: SearchResult) -> list[list[Step]]:
    """Each path as `[from_key, relation_key, to_key, backward]` in walking order; backward=True where
    the stored triple is to -> from."""
    adj = kg.adjacency
    paths = []
    for steps, nodes in zip(result.steps, result.nodes, strict=True):
        path = []
        for i, pos in enumerate(steps):
            edge = int(adj.edge[pos])
            path.append([kg.keys[nodes[i]], kg.relation_keys[int(kg.relations[edge])], kg.keys[nodes[i + 1]],
                         bool(adj.back[pos])])
        paths.append(path)
    return paths


def verbalize_path(kg: KG, path: list[Step]) -> str:
    """One sentence: every hop states its stored fact in the stored direction, so a backward hop reads
    "Titanic directed by James Cameron" when walking from James Cameron to Titanic."""
    if not path:
        return ""
    label = _labeller(kg)
    facts = []
    for head, rel, tail, backward in path:
        subject, obj = (tail, head) if backward else (head, tail)
        facts.append(f"{label(subject)} {_relation_label(kg, rel)} {label(obj)}")
    return "; ".join(facts) + "."


def _labeller(kg: KG):  # noqa: ANN202
    def label(key: str) -> str:
        eid = kg.id_of(key)
        return kg.labels[eid] if eid is not None else key
    return label


def _relation_label(kg: KG, rel_key: str) -> str:
    rid = kg.relation_index.get(rel_key)
    return (kg.relation_labels[rid] if rid is not None else rel_key).replace("_", " ")
