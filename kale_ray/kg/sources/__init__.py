"""KG source readers: each turns one source format into `KGTables` plus a skip report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kale_ray.kg.sources.base import KGBuilder

SOURCES = ("wordnet", "metaqa", "triples", "wikidata")


def read_source(kind: str, path: Path, **options: Any) -> KGBuilder:
    """Dispatch to the reader of `kind`; options are the source's own (label files, Ray settings)."""
    if kind == "metaqa":
        from kale_ray.kg.sources.metaqa import read_metaqa_kb

        return read_metaqa_kb(path)
    if kind == "wordnet":
        from kale_ray.kg.sources.wordnet import read_wordnet

        return read_wordnet(path)
    if kind in ("triples", "wikidata"):
        raise ValueError(f"the {kind} source is built by the streaming build (kale_ray.kg.build, via "
                         "kale_ray.kg.stage.build_kg), not collected in memory")
    raise ValueError(f"unknown KG source {kind!r}; expected one of {', '.join(SOURCES)}")
