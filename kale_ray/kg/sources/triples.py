"""Generic triples: TSV, CSV or Parquet with head, relation, tail; optional label files.

Text files may start with a `head<sep>relation<sep>tail` header; otherwise every line is a triple.
Parquet files need `head`, `relation`, `tail` columns (or use their first three). Label files are
TSV: `key<TAB>label[<TAB>alias|alias...]` for entities, `key<TAB>label` for relations (Wikidata
`Q42<TAB>Douglas Adams`, `P69<TAB>educated at`).
"""

from __future__ import annotations

import csv
from pathlib import Path

from kale_ray.kg.sources.base import KGBuilder

HEADER = ("head", "relation", "tail")


def read_triples(path: Path, entity_labels: Path | None = None,
                 relation_labels: Path | None = None) -> KGBuilder:
    path = Path(path)
    builder = KGBuilder()
    if entity_labels:
        _read_entity_labels(builder, Path(entity_labels))
    if relation_labels:
        _read_relation_labels(builder, Path(relation_labels))
    if path.suffix == ".parquet":
        _read_parquet(builder, path)
    else:
        _read_text(builder, path, "," if path.suffix == ".csv" else "\t")
    return builder


def _add(builder: KGBuilder, where: str, row: list[str]) -> None:
    if len(row) != 3:
        builder.log.skip(where, f"expected 3 fields (head, relation, tail), got {len(row)}")
        return
    head, relation, tail = (str(x).strip() if x is not None else "" for x in row)
    if not head or not relation or not tail:
        builder.log.skip(where, "empty head, relation or tail")
        return
    builder.triple(head, relation, tail)


def _read_text(builder: KGBuilder, path: Path, delimiter: str) -> None:
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE)
        for lineno, row in enumerate(reader, 1):
            if not row or not any(cell.strip() for cell in row):
                continue
            if lineno == 1 and tuple(c.strip().lower() for c in row) == HEADER:
                continue
            _add(builder, f"{path}:{lineno}", row)


def _read_parquet(builder: KGBuilder, path: Path) -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    names = list(HEADER) if all(n in table.column_names for n in HEADER) else table.column_names[:3]
    if len(names) < 3:
        raise ValueError(f"{path}: a triples Parquet file needs head, relation and tail columns")
    columns = [table.column(n).cast("string").to_pylist() for n in names]
    for i, row in enumerate(zip(*columns, strict=True)):
        _add(builder, f"{path}#{i}", list(row))


def _read_entity_labels(builder: KGBuilder, path: Path) -> None:
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
                if line.strip():
                    builder.log.skip(f"{path}:{lineno}", "expected key<TAB>label[<TAB>aliases]")
                continue
            aliases = [a.strip() for a in parts[2].split("|")] if len(parts) > 2 else []
            builder.entity(parts[0].strip(), label=parts[1].strip(), aliases=[a for a in aliases if a])


def _read_relation_labels(builder: KGBuilder, path: Path) -> None:
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
                if line.strip():
                    builder.log.skip(f"{path}:{lineno}", "expected key<TAB>label")
                continue
            builder.relation(parts[0].strip(), label=parts[1].strip())
