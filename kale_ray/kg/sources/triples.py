"""Generic triples: TSV, CSV or Parquet with head, relation, tail; optional label files.

A `head<sep>relation<sep>tail` header line is skipped (wherever it stands: batches are parsed apart);
every other line is a triple. Parquet files need `head`, `relation`, `tail` columns (or use their first
three). Label files are TSV: `key<TAB>label[<TAB>alias|alias...]` for entities, `key<TAB>label` for
relations (Wikidata `Q42<TAB>Douglas Adams`, `P69<TAB>educated at`).

The triples and the entity labels are parsed in batches into shards and assembled by the streaming
build (`kale_ray/kg/build.py`): on Ray Data and Ray tasks when a Ray cluster is up (`kg build` starts one
for this source), else batch by batch in this process. Either way no process holds all triples; ids
are ranks in the sorted key table. The relation labels (a few thousand lines at most) are read here.
"""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from kale_ray.kg.build import BuildLimits, BuildReport, ShardSummary, assemble, read_lines

HEADER = ("head", "relation", "tail")


def _summary(directory: str, name: str, keys: list[str], labels: list[str | None], aliases: list[list[str]],
             edges: tuple[list[str], list[str], list[str]], skipped: Counter[str], examples: list[str]
             ) -> dict[str, list[Any]]:
    import uuid

    from kale_ray.kg.build import EDGE_SHARD, ENTITY_SHARD, write_shard

    entities = pa.table([keys, labels, aliases, [None] * len(keys)], schema=ENTITY_SHARD)
    summary = write_shard(Path(directory), f"{name}-{uuid.uuid4().hex}", entities,
                          pa.table(list(edges), schema=EDGE_SHARD), properties={}, skipped=dict(skipped),
                          examples=examples)
    return summary.row()


def _skip(skipped: Counter[str], examples: list[str], where: str, reason: str) -> None:
    skipped[reason] += 1
    if len(examples) < 20:
        examples.append(f"{where}: {reason}")


def _add(rows: tuple[list[str], list[str], list[str]], skipped: Counter[str], examples: list[str], where: str,
         row: list[Any]) -> None:
    if len(row) != 3:
        _skip(skipped, examples, where, f"expected 3 fields (head, relation, tail), got {len(row)}")
        return
    head, relation, tail = (str(x).strip() if x is not None else "" for x in row)
    if not head or not relation or not tail:
        _skip(skipped, examples, where, "empty head, relation or tail")
        return
    rows[0].append(head)
    rows[1].append(relation)
    rows[2].append(tail)


def parse_triple_batch(batch: dict[str, Any], directory: str, where: str, delimiter: str) -> dict[str, list[Any]]:
    """A batch of text lines -> one shard of edges."""
    rows: tuple[list[str], list[str], list[str]] = ([], [], [])
    skipped: Counter[str] = Counter()
    examples: list[str] = []
    quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
    for row in csv.reader((str(line) for line in batch["text"]), delimiter=delimiter, quoting=quoting):
        if not row or not any(cell.strip() for cell in row):
            continue
        if tuple(c.strip().lower() for c in row) == HEADER:
            continue
        _add(rows, skipped, examples, where, row)
    return _summary(directory, "t", [], [], [], rows, skipped, examples)


def parse_parquet_batch(batch: pa.Table, directory: str, where: str) -> dict[str, list[Any]]:
    names = list(HEADER) if all(n in batch.column_names for n in HEADER) else batch.column_names[:3]
    if len(names) < 3:
        raise ValueError(f"{where}: a triples Parquet file needs head, relation and tail columns")
    rows: tuple[list[str], list[str], list[str]] = ([], [], [])
    skipped: Counter[str] = Counter()
    examples: list[str] = []
    columns = [batch.column(n).cast(pa.string()).to_pylist() for n in names]
    for row in zip(*columns, strict=True):
        _add(rows, skipped, examples, where, list(row))
    return _summary(directory, "t", [], [], [], rows, skipped, examples)


def parse_label_batch(batch: dict[str, Any], directory: str, where: str) -> dict[str, list[Any]]:
    """A batch of `key<TAB>label[<TAB>aliases]` lines -> one shard of entities (no edges)."""
    keys: list[str] = []
    labels: list[str | None] = []
    aliases: list[list[str]] = []
    skipped: Counter[str] = Counter()
    examples: list[str] = []
    for line in batch["text"]:
        line = str(line)
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
            if line.strip():
                _skip(skipped, examples, where, "expected key<TAB>label[<TAB>aliases]")
            continue
        label = parts[1].strip()
        more: list[str] = []
        for alias in (a.strip() for a in parts[2].split("|")) if len(parts) > 2 else []:
            if alias and alias not in more and alias != label:
                more.append(alias)
        keys.append(parts[0].strip())
        labels.append(label)
        aliases.append(more)
    return _summary(directory, "e", keys, labels, aliases, ([], [], []), skipped, examples)


def read_relation_labels(path: Path) -> tuple[dict[str, str], Counter[str], list[str]]:
    labels: dict[str, str] = {}
    skipped: Counter[str] = Counter()
    examples: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
                if line.strip():
                    _skip(skipped, examples, f"{path}:{lineno}", "expected key<TAB>label")
                continue
            labels.setdefault(parts[0].strip(), parts[1].strip())
    return labels, skipped, examples


def _line_batches(path: Path, lines: int) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8", newline="") as fh:
        chunk: list[str] = []
        for line in fh:
            chunk.append(line.rstrip("\n").rstrip("\r"))
            if len(chunk) >= lines:
                yield {"text": np.array(chunk, dtype=object)}
                chunk = []
        if chunk:
            yield {"text": np.array(chunk, dtype=object)}


def _parse(path: Path, fn: Callable[..., dict[str, list[Any]]], limits: BuildLimits, parquet: bool = False,
           **kwargs: Any) -> list[ShardSummary]:
    """Shards of one input file, in file order: on Ray Data when Ray is up, else batch by batch here."""
    import ray

    if ray.is_initialized():
        import ray.data

        ctx = ray.data.DataContext.get_current()
        keep = ctx.execution_options.preserve_order
        ctx.execution_options.preserve_order = True
        try:
            ds = ray.data.read_parquet(str(path)) if parquet else read_lines(path)
            ds = ds.map_batches(fn, batch_size=limits.shard_lines, batch_format="pyarrow" if parquet else "numpy",
                                fn_kwargs=kwargs)
            return [ShardSummary.from_row(str(r["summary"])) for r in ds.iter_rows()]
        finally:
            ctx.execution_options.preserve_order = keep
    if parquet:
        import pyarrow.parquet as pq

        batches = (pa.Table.from_batches([b]) for b in pq.ParquetFile(path).iter_batches(limits.shard_lines))
    else:
        batches = _line_batches(path, limits.shard_lines)
    return [ShardSummary.from_row(fn(batch, **kwargs)["summary"][0]) for batch in batches]


def build_triples(path: Path, out: Path, *, config_hash: str, inputs: dict[str, Any],
                  entity_labels: Path | None = None, relation_labels: Path | None = None,
                  limits: BuildLimits | None = None) -> Path:
    path, out = Path(path), Path(out)
    limits = limits or BuildLimits()
    report = BuildReport()
    work = out / ".build"
    shutil.rmtree(work, ignore_errors=True)
    (work / "parsed").mkdir(parents=True)
    directory = str(work / "parsed")
    shards: list[ShardSummary] = []
    if entity_labels:
        shards += _parse(Path(entity_labels), parse_label_batch, limits, directory=directory,
                         where=str(entity_labels))
    if path.suffix == ".parquet":
        shards += _parse(path, parse_parquet_batch, limits, parquet=True, directory=directory, where=str(path))
    else:
        shards += _parse(path, parse_triple_batch, limits, directory=directory, where=str(path),
                         delimiter="," if path.suffix == ".csv" else "\t")
    names, skipped, examples = read_relation_labels(Path(relation_labels)) if relation_labels else ({}, Counter(), [])
    report.lap("parse")
    return assemble(shards, out, config_hash=config_hash, source="triples", inputs=inputs, limits=limits,
                    report=report, relation_names=names, skipped_before={"reasons": skipped, "examples": examples})
