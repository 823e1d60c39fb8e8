"""The one place stages get their train and test rows from: load, split, limit."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from kale_ray.data.benchmarks import LoadReport, load_benchmark
from kale_ray.data.split import split_table, take


@dataclass
class Splits:
    train: pa.Table
    test: pa.Table
    report: LoadReport


def load_splits(cfg) -> Splits:  # noqa: ANN001 (KaleConfig; avoids an import cycle)
    report = LoadReport()
    table = load_benchmark(cfg.data.benchmark, cfg.data_root, cfg.data.source_split, cfg.data.strict, report)
    train, test = split_table(table, cfg.data.test_fraction, cfg.data.split_seed)
    return Splits(take(train, cfg.data.limit_train), take(test, cfg.data.limit_test), report)
