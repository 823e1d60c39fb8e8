"""Deterministic train/test splits keyed by row id, so adding rows never moves existing ones."""

from __future__ import annotations

import hashlib

import pyarrow as pa


def in_test(row_id: str, test_fraction: float, seed: int) -> bool:
    digest = hashlib.sha256(f"{seed}:{row_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


def split_table(table: pa.Table, test_fraction: float, seed: int) -> tuple[pa.Table, pa.Table]:
    """(train, test) in the table's original order."""
    mask = pa.array([in_test(i, test_fraction, seed) for i in table.column("id").to_pylist()])
    return table.filter(pa.compute.invert(mask)), table.filter(mask)


def take(table: pa.Table, limit: int | None) -> pa.Table:
    return table if limit is None else table.slice(0, limit)
