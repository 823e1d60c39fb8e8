"""Deterministic train/test splits keyed by row id, and the seeded, stratified samples the limits draw.

Both hash a row's id with a seed instead of reading the table's order: benchmark files are sorted (MMLU
by subject, the first file abstract algebra), so "the first N" is one subject, not a sample.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

import pyarrow as pa


def _unit(seed: int | str, row_id: str) -> float:
    digest = hashlib.sha256(f"{seed}:{row_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_test(row_id: str, test_fraction: float, seed: int) -> bool:
    return _unit(seed, row_id) < test_fraction


def split_table(table: pa.Table, test_fraction: float, seed: int) -> tuple[pa.Table, pa.Table]:
    """(train, test) in the table's original order."""
    mask = pa.array([in_test(i, test_fraction, seed) for i in table.column("id").to_pylist()])
    return table.filter(pa.compute.invert(mask)), table.filter(mask)


def strata(table: pa.Table) -> list[str]:
    """Each row's stratum: its subject (MMLU subject, BBH task), else the file it came from (OpenBookQA's
    test and dev), so a benchmark made of several parts is sampled across all of them."""
    subjects = table.column("subject").to_pylist() if "subject" in table.column_names else [None] * table.num_rows
    sources = table.column("source").to_pylist() if "source" in table.column_names else [None] * table.num_rows
    return [s if s else (src or "") for s, src in zip(subjects, sources, strict=True)]


def allocate(sizes: dict[str, int], limit: int, seed: int) -> dict[str, int]:
    """Proportional quotas summing to `limit` (largest remainder; ties broken by a seeded hash), each
    within its stratum's size: with more strata than items, as many strata as items get one each."""
    total = sum(sizes.values())
    exact = {k: limit * n / total for k, n in sizes.items()}
    quota = {k: min(sizes[k], int(v)) for k, v in exact.items()}
    left = limit - sum(quota.values())
    order = sorted(sizes, key=lambda k: (-(exact[k] - int(exact[k])), _unit(f"{seed}:stratum", k)))
    while left > 0:
        for k in order:
            if left and quota[k] < sizes[k]:
                quota[k] += 1
                left -= 1
    return quota


def sample(table: pa.Table, limit: int | None, seed: int) -> pa.Table:
    """At most `limit` rows, a seeded random sample stratified by `strata`, in the table's order.

    Within a stratum the rows with the smallest seeded hash of their id are taken, so the same seed
    draws the same items whatever the file order, and a larger limit keeps the smaller one's items
    whenever the quotas allow."""
    if limit is None or limit >= table.num_rows:
        return table
    keys = strata(table)
    ids = table.column("id").to_pylist()
    members: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        members[key].append(i)
    quota = allocate({k: len(v) for k, v in members.items()}, limit, seed)
    chosen: list[int] = []
    for key, rows in members.items():
        chosen.extend(sorted(rows, key=lambda i: _unit(f"sample:{seed}", ids[i]))[: quota[key]])
    return table.take(pa.array(sorted(chosen), pa.int64()))


def take(table: pa.Table, limit: int | None, seed: int = 0) -> pa.Table:
    """The limit every stage applies: a seeded stratified sample (never the first N rows)."""
    return sample(table, limit, seed)


def mix(table: pa.Table) -> dict[str, dict[str, int]]:
    """benchmark -> stratum -> rows (a file shown as `<folder>/<file>`), most rows first: what a sample
    is made of, for `kale-ray data show` and the stage's manifest."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    benches = table.column("benchmark").to_pylist()
    for bench, key in zip(benches, strata(table), strict=True):
        if "/" in key:
            parts = key.rstrip("/").split("/")
            key = "/".join(parts[-2:])
        out[bench][key] += 1
    return {b: dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) for b, c in out.items()}
