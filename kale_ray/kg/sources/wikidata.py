"""The Wikidata JSON dump: a JSON array with one entity per line (`[`, `{...},`, ..., `]`), optionally
.gz or .bz2. Lines are parsed in parallel with Ray Data (`read_text` + `map_batches`), so a full dump
spreads over the cluster; the driver only assembles ids. Item-to-item statements become triples
(deprecated ranks left out), English labels and aliases the entity names, property entities the
relation labels. Objects never seen as entities in the dump keep their id as label.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from kale_ray.kg.sources.base import KGBuilder

LANG = "en"


def parse_entity_line(line: str) -> dict[str, Any]:
    """One dump line -> {kind, key, label, aliases, description, rels, tails, error}; kind 'skip' for
    the array brackets and blank lines."""
    text = line.strip().rstrip(",")
    out: dict[str, Any] = {"kind": "skip", "key": "", "label": None, "aliases": [], "description": None,
                           "rels": [], "tails": [], "error": None}
    if text in {"", "[", "]"}:
        return out
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        return {**out, "kind": "error", "error": f"invalid JSON ({err.msg})"}
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        return {**out, "kind": "error", "error": "entity has no id"}
    kind = obj.get("type")
    if kind not in {"item", "property"}:
        return {**out, "kind": "error", "error": f"unsupported entity type {kind!r}"}
    label = ((obj.get("labels") or {}).get(LANG) or {}).get("value")
    aliases = [a.get("value") for a in (obj.get("aliases") or {}).get(LANG, []) if a.get("value")]
    description = ((obj.get("descriptions") or {}).get(LANG) or {}).get("value")
    rels: list[str] = []
    tails: list[str] = []
    if kind == "item":
        for prop, statements in (obj.get("claims") or {}).items():
            for st in statements or []:
                if st.get("rank") == "deprecated":
                    continue
                snak = st.get("mainsnak") or {}
                value = (snak.get("datavalue") or {}).get("value")
                if snak.get("snaktype") == "value" and isinstance(value, dict) \
                        and value.get("entity-type") == "item" and isinstance(value.get("id"), str):
                    rels.append(prop)
                    tails.append(value["id"])
    return {**out, "kind": kind, "key": obj["id"], "label": label, "aliases": aliases,
            "description": description, "rels": rels, "tails": tails}


def parse_batch(batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
    rows = [parse_entity_line(str(line)) for line in batch["text"]]
    return {name: [row[name] for row in rows] for name in rows[0]} if rows else {}


def read_wikidata(path: Path, batch_size: int = 256) -> KGBuilder:
    import ray.data

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Wikidata dump not found: {path}")
    ds = ray.data.read_text(str(path)).map_batches(parse_batch, batch_size=batch_size, batch_format="numpy")
    builder = KGBuilder()
    edges: list[tuple[str, list[str], list[str]]] = []
    counts = {"items": 0, "properties": 0}
    for row in ds.iter_rows():
        kind = row["kind"]
        if kind == "skip":
            continue
        if kind == "error":
            builder.log.skip(str(path), row["error"])
            continue
        if kind == "property":
            counts["properties"] += 1
            builder.relation(row["key"], label=row["label"])
            continue
        counts["items"] += 1
        builder.entity(row["key"], label=row["label"], aliases=list(row["aliases"]),
                       description=row["description"])
        edges.append((row["key"], list(row["rels"]), list(row["tails"])))
    known = set(builder.entity_ids)
    dangling = 0
    for head, rels, tails in edges:
        for rel, tail in zip(rels, tails, strict=True):
            dangling += tail not in known
            builder.triple(head, rel, tail)
    builder.info = {**counts, "tails_without_entity": dangling}
    return builder
