"""Paths between explicit KG keys (`kale-ray kg paths`): one JSON line per input pair."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from kale_ray.artifacts import atomic_write_text
from kale_ray.progress import Progress


def limits_from(paths_cfg, seed: int):  # noqa: ANN001, ANN201 (PathsConfig -> SearchLimits)
    from kale_ray.kg.paths import SearchLimits

    return SearchLimits(max_paths=paths_cfg.max_paths, max_hops=paths_cfg.max_hops, anchors=paths_cfg.anchors,
                        anchor_hops=paths_cfg.anchor_hops, anchor_depth=paths_cfg.anchor_depth,
                        max_expansions=paths_cfg.max_expansions, seed=seed, heuristic=paths_cfg.heuristic,
                        max_degree_through=paths_cfg.max_degree_through)


def search_pairs(kg_dir: Path, pairs: Path, out: Path, paths_cfg, seed: int = 0) -> dict[str, int]:  # noqa: ANN001
    """Each line `source_key<TAB>target_key` -> {source, target, status, paths, lengths, nodes_expanded,
    seconds, truncated}; status is ok | no_path | unknown_entity | malformed. Written atomically."""
    from kale_ray.kg.paths import PathSearcher
    from kale_ray.kg.store import load_kg
    from kale_ray.kg.verbalize import path_triples

    kg = load_kg(kg_dir)
    searcher = PathSearcher(kg.adjacency, limits_from(paths_cfg, seed))
    lines = Path(pairs).read_text(encoding="utf-8").splitlines()
    records: list[str] = []
    status: Counter[str] = Counter()
    progress = Progress("kg paths", len(lines), unit="pairs")
    for lineno, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split("\t")]
        record: dict[str, Any] = {"line": lineno, "source": fields[0], "target": fields[1] if len(fields) > 1 else None,
                                  "paths": [], "lengths": [], "nodes_expanded": 0, "seconds": 0.0,
                                  "truncated": False}
        if len(fields) != 2 or not all(fields):
            record["status"] = "malformed"
            record["error"] = "expected source_key<TAB>target_key"
        else:
            ids = [kg.id_of(k) for k in fields]
            missing = [k for k, i in zip(fields, ids, strict=True) if i is None]
            if missing:
                record["status"] = "unknown_entity"
                record["error"] = f"not in the KG: {', '.join(missing)}"
            else:
                t0 = time.perf_counter()
                result = searcher.search(ids[0], ids[1])
                record.update(paths=path_triples(kg, result), lengths=result.lengths,
                              nodes_expanded=result.nodes_expanded, seconds=time.perf_counter() - t0,
                              truncated=result.truncated, status="ok" if result.steps else "no_path")
        status[record["status"]] += 1
        records.append(json.dumps(record))
        progress.update()
    progress.close()
    atomic_write_text(Path(out), "\n".join(records) + ("\n" if records else ""))
    return dict(status)
