"""The Wikidata JSON dump: a JSON array with one entity per line (`[`, `{...},`, ..., `]`), optionally
.gz or .bz2. Lines are parsed in parallel with Ray Data (`build.read_lines` + `map_batches`); each batch is
written as a shard by the task that parsed it and the artifact is assembled by Ray tasks of bounded
memory (`kale_ray/kg/build.py`): no process holds all statements, the driver only sums counts. Item-to-item statements become triples
(deprecated ranks left out), English labels and aliases the entity names, property entities the
relation labels. Objects never seen as entities in the dump keep their id as label.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from kale_ray.kg.build import BuildLimits, BuildReport, ShardSummary, assemble, read_lines

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


def parse_lines(lines, directory: str) -> dict[str, list[Any]]:  # noqa: ANN001 (array of str)
    """One Ray Data batch of dump lines -> one shard on disk (entities and item-to-item edges) and one
    summary row: the batch's statements never travel to the driver."""
    from kale_ray.kg.build import EDGE_SHARD, ENTITY_SHARD, write_shard

    keys: list[str] = []
    labels: list[str | None] = []
    aliases: list[list[str]] = []
    descriptions: list[str | None] = []
    heads: list[str] = []
    rels: list[str] = []
    tails: list[str] = []
    properties: dict[str, str | None] = {}
    skipped: Counter[str] = Counter()
    examples: list[str] = []
    counts = {"items": 0, "properties": 0}
    for line in lines:
        row = parse_entity_line(str(line))
        kind = row["kind"]
        if kind == "skip":
            continue
        if kind == "error":
            skipped[row["error"]] += 1
            if len(examples) < 20:
                examples.append(f"{directory}: {row['error']}")
            continue
        if kind == "property":
            counts["properties"] += 1
            properties.setdefault(row["key"], row["label"])
            continue
        counts["items"] += 1
        label = row["label"] or row["key"]
        kept: list[str] = []
        for alias in row["aliases"]:
            if alias and alias not in kept and alias != label:
                kept.append(alias)
        keys.append(row["key"])
        labels.append(row["label"])
        aliases.append(kept)
        descriptions.append(row["description"])
        heads.extend([row["key"]] * len(row["tails"]))
        rels.extend(row["rels"])
        tails.extend(row["tails"])
    entities = pa.table([keys, labels, aliases, descriptions], schema=ENTITY_SHARD)
    edges = pa.table([heads, rels, tails], schema=EDGE_SHARD)
    summary = write_shard(Path(directory), uuid.uuid4().hex, entities, edges, properties=properties,
                          skipped=dict(skipped), examples=examples, counts=counts)
    return summary.row()


def parse_batch(batch: dict[str, Any], directory: str) -> dict[str, list[Any]]:
    return parse_lines(batch["text"], directory)


def dump_files(path: Path) -> list[Path]:
    """The dump's files in reading order: the file itself, or a directory's files by name (a dump split
    into parts, one read task each, e.g. `split -l` of the decompressed dump, or parts written so)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise FileNotFoundError(f"Wikidata dump directory has no files: {path}")
        return files
    if not path.exists():
        raise FileNotFoundError(f"Wikidata dump not found: {path}")
    return [path]


def build_wikidata(path: Path, out: Path, *, config_hash: str, inputs: dict[str, Any],
                   limits: BuildLimits | None = None, on_step: Callable[[str], None] | None = None) -> Path:
    """Parse the dump (a file, or a directory of its parts) on Ray Data into shards (in input order),
    then `build.assemble` the artifact."""
    import ray.data

    path, out = Path(path), Path(out)
    files = dump_files(path)
    limits = limits or BuildLimits()
    report = BuildReport()
    work = out / ".build"
    shutil.rmtree(work, ignore_errors=True)
    (work / "parsed").mkdir(parents=True)
    ctx = ray.data.DataContext.get_current()
    keep_order = ctx.execution_options.preserve_order
    ctx.execution_options.preserve_order = True  # shard order = dump order: edge ids are reproducible
    try:
        ds = read_lines(files).map_batches(parse_batch, batch_size=limits.shard_lines,
                                                      batch_format="numpy",
                                                      fn_kwargs={"directory": str(work / "parsed")})
        summaries = [ShardSummary.from_row(str(r["summary"])) for r in ds.iter_rows()]
    finally:
        ctx.execution_options.preserve_order = keep_order
    report.lap("parse")
    if on_step:
        on_step("parse")
    return assemble(summaries, out, config_hash=config_hash, source="wikidata", inputs=inputs, limits=limits,
                    report=report, relation_label=lambda key: key, on_step=on_step,
                    info={"items": sum(s.counts.get("items", 0) for s in summaries),
                          "properties": sum(s.counts.get("properties", 0) for s in summaries)})
