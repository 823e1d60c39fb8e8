"""Config of the KG build, entity linking and the multi-path A* search (docs/method.md, Stage 1, steps 1-2)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class KGConfig(_Section):
    source: Literal["wordnet", "metaqa", "triples", "wikidata"] = Field(
        "wordnet", description="Kind of KG source to build the graph from.")
    input: Path | None = Field(
        None, description="Source path (default: /usr/share/wordnet for wordnet, <data_root>/metaqa/kb.txt for metaqa; "
                          "wikidata: the dump, or a directory of its parts read in name order).")
    entity_labels: Path | None = Field(
        None, description="triples source: TSV key<TAB>label[<TAB>alias|alias] naming the entities.")
    relation_labels: Path | None = Field(
        None, description="triples source: TSV key<TAB>label naming the relations.")
    max_entity_degree_share: float = Field(
        0.01, gt=0, le=1, description="Nodes linked to more than this share of all nodes count as hubs and are not linked.")
    min_hub_degree: int = Field(
        50, ge=1, description="A node is only a hub if its degree is also at least this (small KGs have no hubs).")
    link_candidates: int = Field(
        2, ge=1, description="KG nodes kept per linked mention (an alias naming several nodes: highest degree first).")


class PathsConfig(_Section):
    heuristic: Literal["anchor", "landmark", "target"] = Field(
        "target", description="A* lower bound: anchor (docs/method.md's one-sided anchor bound), landmark (two-sided "
        "landmark bound over the same anchors) or target (the answer entity as its own landmark: exact within "
        "anchor_depth hops; fewest expansions, see bench/README.md).")
    anchors: int = Field(4, ge=0, description="k: anchor nodes sampled around the answer entity (anchor, landmark).")
    anchor_hops: int = Field(2, ge=1, description="m: anchors come from the m-hop neighbourhood of the answer.")
    anchor_depth: int = Field(3, ge=1, description="d: depth of the BFS run from each anchor (and from the target).")
    max_paths: int = Field(8, ge=1, description="K: paths kept per (question entity, answer entity) pair.")
    max_hops: int = Field(4, ge=1, description="Hop limit of a path.")
    max_pairs_per_row: int = Field(16, ge=1, description="Entity pairs searched per question at most.")
    max_paths_per_row: int = Field(8, ge=1, description="Paths kept per row over all its pairs (shortest first).")
    max_expansions: int = Field(
        200_000, ge=1, description="Expansion budget per pair; a search that hits it returns what it found so far.")
    max_degree_through: int | None = Field(
        None, ge=1, description="Hub cap: a node with more distinct neighbours (undirected) than this is never an "
        "inner node of a path, only its source or answer end; every heuristic and BFS of the search honours it. "
        "Paths through hubs like Wikidata's 'human' or 'English' are expensive (a hub's neighbourhood grows with "
        "the graph) and say nothing as rationales. null = no limit (WordNet and MetaQA need none: MetaQA's "
        "multi-hop answers go through genre and language nodes of thousands of neighbours). For Wikidata-scale "
        "graphs, a few thousand (docs/stages/kg.md, 'Hubs').")
    no_path: Literal["fallback", "drop"] = Field(
        "fallback", description="Rows with no path: write a w/o-KI rationale (fallback) or drop them.")
    workers: int = Field(2, ge=1, description="Path-search actors in the Ray Data actor pool.")
    worker_cpus: float = Field(0.5, gt=0, description="CPUs per path-search actor (fractional leaves room for reads).")
    batch_size: int = Field(16, ge=1, description="Rows per map_batches call (and per output part file).")
