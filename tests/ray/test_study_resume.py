"""`kale-ray study run` in parts with the real pipeline (a random 2-layer Llama, real ARC-Easy items,
no training: Vanilla only, so it stays small): `--only` runs just the variants named, an interrupted
study run again does only what is missing, a complete one redoes nothing, and a variant whose artifacts
are gone is not run again while the committed results hold it for the same recipe."""

from __future__ import annotations

import json

import pytest

from kale_ray.config import ConfigError, load_config
from kale_ray.pipeline import run_study

pytestmark = pytest.mark.ray


def test_study_runs_in_parts_and_resumes(ray_local, tmp_path, data_root, tiny_llama_path, capsys) -> None:
    cfg = load_config(None, [
        f"workdir={tmp_path}", "run_name=st", f"data_root={data_root}", f"model.name_or_path={tiny_llama_path}",
        "data.limit_train=4", "data.limit_test=3", "train.methods=[]", "eval.engine=local",
        "eval.known_incorrect=false", "study.variants={a: [], b: [data.limit_test=2]}",
        f"study.results={tmp_path}/docs/results.md", f"study.results_json={tmp_path}/docs/results.json"])
    with pytest.raises(ConfigError, match="unknown variants"):
        run_study(cfg, only=["a", "nope"])
    assert not (tmp_path / "st-a").exists()  # refused before anything ran

    run_study(cfg, only=["a"])
    assert (tmp_path / "st-a" / "results" / "Vanilla" / "arc-easy" / "predictions.jsonl").is_file()
    assert not (tmp_path / "st-b").exists()
    assert "Variant `b` has not run yet" in (tmp_path / "docs" / "results.md").read_text()

    # Interrupted in its evaluation: the pair's files and the summary are not written yet.
    data_mtime = (tmp_path / "st-a" / "data" / "test.parquet").stat().st_mtime_ns
    for name in ("metrics.json", "predictions.jsonl"):
        (tmp_path / "st-a" / "results" / "Vanilla" / "arc-easy" / name).unlink()
    (tmp_path / "st-a" / "results" / "summary.json").unlink()
    capsys.readouterr()
    run_study(cfg)
    log = capsys.readouterr().out
    assert "data: " in log and "is complete for this config, skipping" in log
    assert (tmp_path / "st-a" / "data" / "test.parquet").stat().st_mtime_ns == data_mtime
    assert "eval: Vanilla/arc-easy: accuracy" in log  # the missing pair of a, and b's
    stages = json.loads((tmp_path / "st-a" / "pipeline.json").read_text())["stages"]
    assert stages["data"]["attempts"] == 2 and stages["eval"]["attempts"] == 2
    page = (tmp_path / "docs" / "results.md").read_text()
    assert "has not run yet" not in page and "Test items scored per benchmark: arc-easy 3" in page

    # Complete: a third run scores nothing again.
    preds = {v: (tmp_path / f"st-{v}" / "results" / "Vanilla" / "arc-easy" / "predictions.jsonl").stat().st_mtime_ns
             for v in ("a", "b")}
    capsys.readouterr()
    run_study(cfg)
    log = capsys.readouterr().out
    assert log.count("eval: Vanilla/arc-easy is complete, skipping") == 2 and "eval: Vanilla/arc-easy: accuracy" not in log
    assert preds == {v: (tmp_path / f"st-{v}" / "results" / "Vanilla" / "arc-easy" / "predictions.jsonl").stat().st_mtime_ns
                     for v in ("a", "b")}
    # The committed results hold both variants' items.
    manifest = json.loads((tmp_path / "docs" / "study" / "manifest.json").read_text())
    assert {"variants/a.items.parquet", "variants/b.items.parquet"} <= set(manifest["files"])

    # The machine that ran `a` is lost: its committed results stand in for it, the same page comes out.
    import shutil

    def scores() -> str:  # the page's scores (its stage times grow with every run of b, which resumes)
        page = (tmp_path / "docs" / "results.md").read_text()
        return page[page.index("## Accuracy"):page.index("## Coverage and cost")]

    page = scores()
    assert "| Vanilla |" in page and "| Vanilla · b |" in page
    shutil.rmtree(tmp_path / "st-a")
    capsys.readouterr()
    run_study(cfg)
    assert "study: variant a is complete in" in capsys.readouterr().out
    assert not (tmp_path / "st-a").exists() and scores() == page
    run_study(cfg, only=["a"], rerun=True)  # asked for: it runs again
    assert (tmp_path / "st-a" / "results" / "Vanilla" / "arc-easy" / "predictions.jsonl").is_file()
    assert scores() == page  # the same config: the same predictions
