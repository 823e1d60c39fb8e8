import pyarrow as pa

from kale_ray.artifacts import (
    Manifest,
    atomic_write_parquet,
    existing_parts,
    is_complete,
    part_path,
    read_parts,
)
from kale_ray.progress import MetricsWriter, Progress, read_metrics


def test_manifest_round_trip_and_tamper_detection(tmp_path):
    atomic_write_parquet(tmp_path / "a.parquet", pa.table({"x": [1, 2]}))
    Manifest(stage="s", config_hash="h1", counts={"rows": 2}).write(tmp_path)
    assert is_complete(tmp_path, "h1")
    assert not is_complete(tmp_path, "other-config")
    (tmp_path / "a.parquet").write_bytes(b"changed")
    assert not is_complete(tmp_path, "h1")
    assert Manifest.read(tmp_path).counts == {"rows": 2}


def test_no_temp_files_left_and_parts_read_in_order(tmp_path):
    for i in (2, 0, 1):
        atomic_write_parquet(part_path(tmp_path, i), pa.table({"i": [i]}))
    assert sorted(existing_parts(tmp_path)) == [0, 1, 2]
    assert read_parts(tmp_path).column("i").to_pylist() == [0, 1, 2]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_progress_line_has_rate_and_eta(tmp_path, capsys):
    progress = Progress("synth", total=10, unit="rows", every_s=0, metrics_path=tmp_path / "m.jsonl")
    progress.update(4, tokens=100)
    line = capsys.readouterr().out
    assert "synth: 4/10 rows" in line and "rows/s" in line and "tokens/s" in line and "ETA" in line
    rows = read_metrics(tmp_path / "m.jsonl")
    assert rows[-1]["done"] == 4 and rows[-1]["tokens"] == 100


def test_progress_close_prints_the_last_line_once(capsys):
    progress = Progress("paths", total=8, every_s=0)
    progress.update(8)
    progress.close()
    assert capsys.readouterr().out.count("paths: 8/8 rows") == 1
    progress = Progress("paths", total=8, every_s=3600)
    progress.update(3)  # printed: the first update always is
    progress.update(5)  # not printed yet
    progress.close()
    assert capsys.readouterr().out.count("paths: 8/8 rows") == 1


def test_metrics_reader_skips_a_line_cut_by_a_crash(tmp_path):
    writer = MetricsWriter(tmp_path / "m.jsonl")
    writer.write({"step": 1})
    with open(tmp_path / "m.jsonl", "a") as fh:
        fh.write('{"step": 2, "lo')
    assert [r["step"] for r in read_metrics(tmp_path / "m.jsonl")] == [1]
