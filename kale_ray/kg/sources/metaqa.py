"""MetaQA's WikiMovies KB: `head|relation|tail` per line; entity names are the keys."""

from __future__ import annotations

from pathlib import Path

from kale_ray.kg.sources.base import KGBuilder


def read_metaqa_kb(path: Path) -> KGBuilder:
    builder = KGBuilder()
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            parts = line.split("|")
            if len(parts) != 3:
                builder.log.skip(f"{path}:{lineno}", f"expected head|relation|tail, got {len(parts)} fields")
                continue
            head, relation, tail = (p.strip() for p in parts)
            if not head or not relation or not tail:
                builder.log.skip(f"{path}:{lineno}", "empty head, relation or tail")
                continue
            builder.triple(head, relation, tail)
    return builder
