"""The one place stages get their train and test rows from: load, split, sample."""

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
    """Each benchmark is split and limited on its own, so adding one to a mix never moves another's
    rows between train and test, and a small benchmark keeps its share next to a large one. The limits
    sample each side after the split, so a training row can never be a test row."""
    report = LoadReport()
    trains, tests = [], []
    for name in cfg.data.benchmarks:
        part = LoadReport()
        table = load_benchmark(name, cfg.data_root, cfg.data.source_split, cfg.data.strict, part)
        report.merge(part)
        fraction, limit_train, limit_test = cfg.data.split_of(name)
        train, test = split_table(table, fraction, cfg.data.split_seed)
        trains.append(take(train, limit_train, cfg.data.sample_seed))
        tests.append(take(test, limit_test, cfg.data.sample_seed))
    return Splits(pa.concat_tables(trains), pa.concat_tables(tests), report)
