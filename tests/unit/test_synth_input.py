"""A paths artifact the synth stage cannot use fails at once with a message that says why."""

from __future__ import annotations

import pyarrow as pa
import pytest

from kale_ray.artifacts import atomic_write_parquet, part_path
from kale_ray.cli import main
from kale_ray.config import load_config
from kale_ray.synth.stage import SynthInputError, run_synth_stage
from tests.synth_support import arc_rows


def test_missing_paths_artifact(tmp_path):
    with pytest.raises(SynthInputError, match="no part-"):
        run_synth_stage(load_config(), tmp_path / "nowhere", tmp_path / "out")


def test_rows_without_path_columns_are_refused(tmp_path, data_root, capsys):
    atomic_write_parquet(part_path(tmp_path / "paths", 0), pa.Table.from_pylist(arc_rows(data_root, 3)))
    with pytest.raises(SynthInputError, match="lacks columns.*path_status"):
        run_synth_stage(load_config(), tmp_path / "paths", tmp_path / "out")
    assert main(["synth", "--paths", str(tmp_path / "paths"), "--out", str(tmp_path / "out")]) == 1
    assert "lacks columns" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()
