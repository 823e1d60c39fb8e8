"""The study's results page: numbers aggregated over seeds and benchmarks exactly, from artifact files."""

import json
import statistics
from pathlib import Path

import pytest

from kale_ray.config import ConfigError, load_config
from kale_ray.study.report import accuracy_table, collect, known_table, method_rows, render
from kale_ray.study.run import variant_config


def _metrics(acc: float, known_incorrect: float = 0.2, probed: int = 10) -> dict:
    return {"n": 50, "accuracy": acc, "acc": acc, "acc_norm": acc / 2,
            "known": {"probed": probed, "no_probe": 50 - probed, "known_correct": 0.5,
                      "known_incorrect": known_incorrect, "unknown": 0.3 - known_incorrect + 0.2}}


def _write_run(run: Path, summary: dict, step_s: dict[str, float]) -> None:
    (run / "results").mkdir(parents=True)
    (run / "results" / "summary.json").write_text(json.dumps(summary))
    (run / "pipeline.json").write_text(json.dumps({"stages": {"paths": {"seconds": 12.5, "result": "x"}}}))
    (run / "paths").mkdir()
    (run / "paths" / "manifest.json").write_text(json.dumps({
        "counts": {"rows": 40, "with_path": 30},
        "extra": {"search_seconds": 2.0, "linking_coverage": {"a": {"linked": 36}}}}))
    for name, seconds in step_s.items():
        (run / "train" / name).mkdir(parents=True)
        lines = [{"step": i, "step_s": seconds * (10 if i == 0 else 1), "tokens_per_s": 100.0, "loss": 1.0}
                 for i in range(4)]
        (run / "train" / name / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


@pytest.fixture
def study(tmp_path):
    cfg = load_config(overrides=[
        f"workdir={tmp_path}", "run_name=st", "train.methods=[sft, ka]", "train.seeds=[0, 1]",
        "study.variants={template: [], hf: [synth.backend=hf, 'train.methods=[ka]', eval.vanilla=false]}",
        f"study.results={tmp_path}/results.md", f"study.results_json={tmp_path}/results.json",
        f"study.extra_results={{BBH (Vanilla): {tmp_path}/bbh}}"])
    (tmp_path / "bbh").mkdir()
    (tmp_path / "bbh" / "summary.json").write_text(json.dumps({"Vanilla": {"bbh-navigate": {"accuracy": 0.04}}}))
    _write_run(tmp_path / "st-template", {
        "Vanilla": {"arc-easy": _metrics(0.40), "absr": _metrics(0.30)},
        "SFT [seed 0]": {"arc-easy": _metrics(0.50), "absr": _metrics(0.30)},
        "SFT [seed 1]": {"arc-easy": _metrics(0.54), "absr": _metrics(0.34)},
        "KALE [seed 0]": {"arc-easy": _metrics(0.60, 0.1, 20), "absr": _metrics(0.40, 0.4, 10)},
        "KALE [seed 1]": {"arc-easy": _metrics(0.62, 0.1, 20), "absr": _metrics(0.36, 0.4, 10)},
    }, {"sft-s0": 2.0, "sft-s1": 2.0, "ka-s0": 3.0, "ka-s1": 3.0})
    _write_run(tmp_path / "st-hf", {
        "KALE [seed 0]": {"arc-easy": _metrics(0.70), "absr": _metrics(0.20)},
        "KALE [seed 1]": {"arc-easy": _metrics(0.70), "absr": _metrics(0.20)},
    }, {"ka-s0": 4.0})
    return cfg


def test_variant_config_applies_overrides_under_its_own_run_name(study):
    hf = variant_config(study, "hf")
    assert (hf.run_name, hf.synth.backend, hf.train.methods, hf.eval.vanilla) == ("st-hf", "hf", ["ka"], False)
    assert variant_config(study, "template").train.methods == ["sft", "ka"]
    bad = study.model_copy(update={"study": study.study.model_copy(update={"variants": {"x": ["train.nope=1"]}})})
    with pytest.raises(ConfigError, match="train.nope"):
        variant_config(bad, "x")


def test_rows_group_seeds_and_name_other_variants(study):
    rows = method_rows(collect(study))
    assert list(rows) == ["Vanilla", "SFT", "KALE", "KALE · hf"]
    assert [m["accuracy"] for m in rows["KALE"]["arc-easy"]] == [0.60, 0.62]
    assert len(rows["Vanilla"]["absr"]) == 1


def test_tables_are_mean_and_sd_over_seeds(study):
    rows = method_rows(collect(study))
    table = accuracy_table(rows, "accuracy")
    kale = next(line for line in table.splitlines() if line.startswith("| KALE |"))
    # arc-easy 0.60/0.62; absr 0.40/0.36; per-seed macro averages 0.50 and 0.49.
    sd = 100 * statistics.stdev([0.60, 0.62])
    assert f"| 61.0 ± {sd:.1f} |" in kale
    assert kale.endswith(f"| 49.5 ± {100 * statistics.stdev([0.50, 0.49]):.1f} |")
    assert "| Vanilla | 40.0 | 30.0 | 35.0 |" in table
    # known&incorrect pooled by probed items: (0.1 * 20 + 0.4 * 10) / 30 = 0.2 in both seeds.
    known = next(line for line in known_table(rows).splitlines() if line.startswith("| KALE |"))
    assert known.startswith("| KALE | 30 |") and "| 20.0 ± 0.0 |" in known


def test_a_running_eval_contributes_its_finished_pairs(study, tmp_path):
    run = tmp_path / "st-hf" / "results"
    (run / "summary.json").unlink()
    (run / "KALE [seed 0]" / "absr").mkdir(parents=True)
    (run / "KALE [seed 0]" / "absr" / "metrics.json").write_text(json.dumps({"key": "k", "metrics": _metrics(0.5)}))
    results = collect(study)
    assert results["variants"]["hf"]["eval"]["partial"]
    assert [m["accuracy"] for m in method_rows(results)["KALE · hf"]["absr"]] == [0.5]
    render(results, tmp_path / "results.md", tmp_path / "results.json", None)
    assert "Variant `hf` is partial" in (tmp_path / "results.md").read_text()


def test_page_renders_with_chart_costs_and_findings(study, tmp_path):
    results = collect(study)
    render(results, tmp_path / "results.md", tmp_path / "results.json", None)
    page = (tmp_path / "results.md").read_text()
    assert (tmp_path / "results.png").stat().st_size > 1000
    assert "| template | template | 40 | 90.0% | 75.0% | 0.050 |" in page  # 36/40 linked, 30/40 paths
    assert "| 2.00 | 3.00 | 1.50 |" in page  # median step seconds without the warm-up step, ka / sft
    assert "- KALE vs SFT: +7.5 points average accuracy" in page
    assert "## BBH (Vanilla)" in page and "| Vanilla | 4.0 | 4.0 |" in page
    assert str(tmp_path / "st-template" / "results" / "summary.json") == results["variants"]["template"]["eval"]["source"]
