"""The study's committed results (kale_ray.study.committed): the page rebuilt from the committed folder
alone is the page built from the artifacts, and a run completed later extends it instead of replacing it."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from kale_ray.study import committed
from kale_ray.study.report import committed_folder, write_report
from tests.unit.test_study_report import _metrics, _predictions, study  # noqa: F401 (the fixture)


def _template_predictions(tmp_path, seeds=(0, 1), kale_right=60) -> None:
    results = tmp_path / "st-template" / "results"
    for seed in seeds:
        _predictions(results, f"KALE [seed {seed}]", "arc-easy", [1] * kale_right + [0] * (100 - kale_right))
        _predictions(results, f"KALE [seed {seed}]", "absr", [1] * 20 + [0] * 30)
        _predictions(results, f"SFT [seed {seed}]", "arc-easy", [1] * 40 + [0] * 60)
        _predictions(results, f"SFT [seed {seed}]", "absr", [1] * 20 + [0] * 30)


def test_the_page_rebuilds_from_the_committed_folder_alone(study, tmp_path):  # noqa: F811
    _template_predictions(tmp_path)
    page = write_report(study)
    first = page.read_text()
    folder = committed_folder(study)
    assert folder == tmp_path / "study"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {"study.json", "variants/template.json", "variants/template.items.parquet",
                                      "variants/hf.json", "variants/hf.items.parquet"}
    assert committed.verify(folder) == [] and manifest["bytes"] < 64 * 1024
    items = pq.read_table(folder / "variants" / "template.items.parquet")
    assert items.num_rows == 4 * 150 and set(items.column("label").to_pylist()) == {
        "KALE [seed 0]", "KALE [seed 1]", "SFT [seed 0]", "SFT [seed 1]"}
    assert "| KALE vs SFT | KALE | SFT | 150 | 0, 1 | +13.3 [" in first
    # The artifacts are gone (a lost machine): the same page, from the folder alone.
    for run in ("st-template", "st-hf", "bbh"):
        shutil.rmtree(tmp_path / run)
    page.unlink()
    (tmp_path / "results.json").unlink()
    assert write_report(study).read_text() == first
    assert (tmp_path / "results.png").stat().st_size > 1000


def test_a_run_completed_later_extends_the_committed_results(study, tmp_path):  # noqa: F811
    _template_predictions(tmp_path)
    write_report(study)
    for run in ("st-template", "st-hf"):
        shutil.rmtree(tmp_path / run)
    # Another machine runs seed 2 only: its artifacts hold that seed's runs and nothing else.
    three = study.model_copy(update={"train": study.train.model_copy(update={"seeds": [0, 1, 2]})})
    run = tmp_path / "st-template" / "results"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"KALE [seed 2]": {"arc-easy": _metrics(0.64), "absr": _metrics(0.38)},
                                                  "SFT [seed 2]": {"arc-easy": _metrics(0.52), "absr": _metrics(0.32)}}))
    _template_predictions(tmp_path, seeds=(2,), kale_right=70)
    page = write_report(three).read_text()
    record = json.loads((tmp_path / "study" / "variants" / "template.json").read_text())
    assert set(record["eval"]["summary"]) == {"Vanilla", *(f"{m} [seed {s}]" for m in ("KALE", "SFT") for s in (0, 1, 2))}
    items = pq.read_table(tmp_path / "study" / "variants" / "template.items.parquet")
    assert items.num_rows == 6 * 150
    kale = next(line for line in page.splitlines() if line.startswith("| KALE |"))
    assert "| 62.0 ± 2.0 |" in kale  # arc-easy over seeds 0.60, 0.62 (committed) and 0.64 (new)
    assert "| KALE · hf |" in page  # the hf variant, whose artifacts are gone too, is still on the page
    # The contrast pairs all three seeds: KALE right on 60, 60 and 70 of the arc-easy items, SFT on 40.
    line = next(x for x in page.splitlines() if x.startswith("| KALE vs SFT | KALE | SFT |"))
    assert "| 150 | 0, 1, 2 |" in line and "| 30 / 0 |" in line
    # Collecting again with nothing new changes nothing.
    before = (tmp_path / "study" / "manifest.json").read_text()
    write_report(three)
    assert (tmp_path / "study" / "manifest.json").read_text() == before


def test_a_committed_file_edited_by_hand_is_refused(study, tmp_path):  # noqa: F811
    write_report(study)
    path = tmp_path / "study" / "variants" / "hf.json"
    path.write_text(path.read_text().replace("0.7", "0.9"))
    assert committed.verify(tmp_path / "study") == ["variants/hf.json"]
    with pytest.raises(ValueError, match="no longer match its manifest"):
        write_report(study)


def test_committed_results_stand_in_only_for_the_same_recipe(study, tmp_path):  # noqa: F811
    from kale_ray.study.variants import variant_config

    template, hf = variant_config(study, "template"), variant_config(study, "hf")
    # hf's evaluation stopped half-way: seed 1 has one benchmark of two. A partial one never stands in.
    summary = tmp_path / "st-hf" / "results" / "summary.json"
    whole = summary.read_text()
    summary.write_text(json.dumps({"KALE [seed 0]": {"arc-easy": _metrics(0.7), "absr": _metrics(0.2)},
                                   "KALE [seed 1]": {"absr": _metrics(0.2)}}))
    write_report(study)
    folder = committed_folder(study)
    assert not committed.complete(folder, "hf", committed.recipe_hash(hf))
    summary.write_text(whole)  # finished: the merge completes it
    write_report(study)
    assert committed.complete(folder, "hf", committed.recipe_hash(hf))
    assert committed.complete(folder, "template", committed.recipe_hash(template))
    # where it runs does not count; what it computes does
    moved = template.model_copy(update={"workdir": tmp_path / "elsewhere"})
    assert committed.recipe_hash(moved) == committed.recipe_hash(template)
    other = template.model_copy(update={"data": template.data.model_copy(update={"limit_test": 7})})
    assert not committed.complete(folder, "template", committed.recipe_hash(other))
    assert not committed.complete(folder, "nope", committed.recipe_hash(template))
