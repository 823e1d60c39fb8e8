"""The study's results page: numbers aggregated over seeds and benchmarks exactly, from artifact files."""

import json
import statistics
from pathlib import Path

import pytest

from kale_ray.config import ConfigError, load_config
from kale_ray.config.study import PathsRun
from kale_ray.study.report import (
    accuracy_table,
    collect,
    comparisons,
    known_table,
    method_rows,
    paired_table,
    path_stats,
    render,
)
from kale_ray.study.variants import extra_dir, variant_config


def _metrics(acc: float, known_incorrect: int = 2, known: int = 10, covered: int = 20) -> dict:
    """A pair's metrics as kale_ray.eval.known.shares writes them (50 items, `covered` with a key fact,
    `known` of those known, `known_incorrect` of those answered wrongly; 12 covered answered wrongly)."""
    return {"n": 50, "accuracy": acc, "acc": acc, "acc_norm": acc / 2,
            "known": {"items": 50, "covered": covered, "known": known, "known_incorrect_items": known_incorrect,
                      "incorrect_covered": 12, "coverage": covered / 50, "known_share": known / covered,
                      "known_incorrect": known_incorrect / known, "reference": 12 / covered}}


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
        "KALE [seed 0]": {"arc-easy": _metrics(0.60, 1, 10), "absr": _metrics(0.40, 4, 10, 30)},
        "KALE [seed 1]": {"arc-easy": _metrics(0.62, 1, 10), "absr": _metrics(0.36, 4, 10, 30)},
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
    # known&incorrect pooled over benchmarks by counts, not by averaging shares: (1 + 4) / (10 + 10) known
    # items = 25%; coverage (20 + 30) / 100; known 20 / 50 covered; reference (12 + 12) / 50 covered.
    known = next(line for line in known_table(rows).splitlines() if line.startswith("| KALE |"))
    assert known == "| KALE | 50 / 100 (50.0%) | 40.0 ± 0.0 | 25.0 ± 0.0 | 48.0 ± 0.0 |"


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


def test_paired_differences_match_seeds_not_positions(study):
    rows = method_rows(collect(study))
    # KALE per-seed averages 0.50 / 0.49, SFT 0.40 / 0.44: differences 10 and 5 points.
    line = next(x for x in paired_table(rows, [("KALE", "SFT", "recipe")]).splitlines() if x.startswith("| KALE vs SFT"))
    assert f"| {7.5:.1f} ± {100 * statistics.stdev([0.10, 0.05]):.1f} | 2 | 2 of 2 |" in line
    # Vanilla has one unseeded run (0.35): every KALE seed pairs with it.
    line = next(x for x in paired_table(rows, [("KALE", "Vanilla", "v")]).splitlines() if x.startswith("| KALE vs"))
    assert f"| {14.5:.1f} ± {100 * statistics.stdev([0.15, 0.14]):.1f} | 2 |" in line
    # SFT seed 0 loses a benchmark: only seed 1 pairs (0.49 - 0.44), whatever its position in the list.
    rows["SFT"]["absr"] = [m for m in rows["SFT"]["absr"] if m["seed"] != 0]
    line = next(x for x in paired_table(rows, [("KALE", "SFT", "recipe")]).splitlines() if x.startswith("| KALE vs SFT"))
    assert "| 5.0 | 1 |" in line


def _paths_artifact(directory: Path, rows: list[tuple[str, list[int], float]]) -> None:
    """rows: (status, hop counts of the paths found, search seconds)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True)
    table = pa.table({
        "paths": [json.dumps([[["h", "r", "t", False]] * h for h in hops]) for _, hops, _ in rows],
        "path_status": [s for s, _, _ in rows], "nodes_expanded": [3 * len(h) for _, h, _ in rows],
        "search_seconds": [t for _, _, t in rows]})
    pq.write_table(table.slice(0, 2), directory / "part-00000.parquet")
    pq.write_table(table.slice(2), directory / "part-00001.parquet")
    (directory / "manifest.json").write_text(json.dumps({"config": {"kg": {"source": "metaqa"}, "paths": {"max_hops": 2}}}))


def test_path_stats_count_every_path_and_each_rows_shortest(tmp_path):
    _paths_artifact(tmp_path / "p", [("ok", [2, 1, 2], 0.002), ("no_path", [], 0.001), ("ok", [2], 0.009),
                                     ("no_answer_entity", [], 0.0)])
    st = path_stats(tmp_path / "p")
    assert st["rows"] == 4 and st["status"] == {"ok": 2, "no_path": 1, "no_answer_entity": 1}
    assert st["hops"] == {"1": 1, "2": 3} and st["shortest_hops"] == {"1": 1, "2": 1}
    assert st["paths_per_row_with_path"] == 2.0 and st["search_ms_per_row"] == pytest.approx(3.0)
    assert st["search_ms_median"] == pytest.approx(1.5)
    assert (st["kg"], st["max_hops"], st["nodes_expanded_per_row"]) == ("metaqa", 2, 3.0)


def test_probe_filter_section_weighs_work_saved_against_accuracy(study, tmp_path):
    cfg = study.model_copy(update={"study": study.study.model_copy(update={
        "variants": {**study.study.variants, "probe": ["synth.select=probe", "train.methods=[ka]", "eval.vanilla=false"]},
        "path_runs": {"MetaQA 2-hop": PathsRun(benchmark="metaqa-2hop", kg_source="metaqa", max_hops=2)}})})
    _paths_artifact(extra_dir(cfg, "paths", "MetaQA 2-hop"), [("ok", [2], 0.001)])
    full = {"mode": "all", "rows_total": 40, "rows_selected": 40, "rows_skipped": 0, "pairs_searched": 200,
            "nodes_expanded": 1000, "rationale_tokens": 4000}
    (tmp_path / "st-template" / "synth").mkdir()
    (tmp_path / "st-template" / "synth" / "manifest.json").write_text(json.dumps({"counts": {}, "extra": {"select": full}}))
    _write_run(tmp_path / "st-probe", {
        "KALE [seed 0]": {"arc-easy": _metrics(0.58), "absr": _metrics(0.40)},
        "KALE [seed 1]": {"arc-easy": _metrics(0.60), "absr": _metrics(0.30)}}, {"ka-s0": 2.0})
    probe = {**full, "mode": "probe", "layer": 15, "p_known_cut": 0.6, "rows_selected": 30, "rows_skipped": 10,
             "pairs_searched": 150, "nodes_expanded": 700, "rationale_tokens": 3100}
    (tmp_path / "st-probe" / "synth").mkdir()
    (tmp_path / "st-probe" / "synth" / "manifest.json").write_text(json.dumps({"counts": {}, "extra": {"select": probe}}))
    (tmp_path / "st-probe" / "results" / "probe").mkdir(parents=True)
    (tmp_path / "st-probe" / "results" / "probe" / "results.json").write_text(json.dumps({
        "best_layer": 15, "label_balance": {"train": {"known": 20}},
        "layers": {"0": {"auroc": 0.5}, "15": {"auroc": 0.61}, "5": {"auroc": 0.55}}}))
    results = collect(cfg)
    assert results["variants"]["probe"]["synth_select"] == "probe"
    render(results, tmp_path / "results.md", tmp_path / "results.json", None)
    page = (tmp_path / "results.md").read_text()
    assert "marked 10 of 40 training rows known (P(known) >= 0.60)" in page
    assert "| entity pairs searched | 200 | 150 | 25.0% |" in page
    assert "| rationale tokens written | 4000 | 3100 | 22.5% |" in page
    assert "| layer | 0 | 5 | 15 |" in page and "| AUROC | 0.500 | 0.550 | 0.610 |" in page
    # KALE · probe per seed 0.49 / 0.45 against KALE 0.50 / 0.49: -1 and -4 points.
    assert f"| KALE · probe vs KALE | the probe filter | -2.5 ± {100 * statistics.stdev([-0.01, -0.04]):.1f} | 2 |" in page
    assert "| MetaQA 2-hop | metaqa | 2 | 1 | 100.0% |" in page
    assert "| KALE vs KALE (no KI) |" not in page  # no ablation run, no row
    assert "| KALE · hf vs KALE | the writer: hf vs template |" in page


def test_other_variants_compare_by_their_overrides(study, tmp_path):
    cfg = study.model_copy(update={"study": study.study.model_copy(update={
        "variants": {**study.study.variants, "fwd": ["train.ka.direction=forward", "train.methods=[ka]", "eval.vanilla=false"]}})})
    _write_run(tmp_path / "st-fwd", {"KALE [seed 0]": {"arc-easy": _metrics(0.70), "absr": _metrics(0.40)},
                                     "KALE [seed 1]": {"arc-easy": _metrics(0.70), "absr": _metrics(0.40)}}, {})
    rows = method_rows(collect(cfg))
    table = paired_table(rows, comparisons(collect(cfg)))
    # 0.55 per seed against KALE's 0.50 / 0.49.
    assert f"| KALE · fwd vs KALE | `train.ka.direction=forward` | {5.5:.1f} ± {100 * statistics.stdev([0.05, 0.06]):.1f} | 2 |" in table


def test_rows_come_from_the_runs_collect_records(study):
    results = collect(study)
    assert results["variants"]["hf"]["runs"]["KALE [seed 1]"] == {"method": "ka", "seed": 1, "variant": "hf"}
    assert set(results["variants"]["hf"]["runs"]) == {"KALE [seed 0]", "KALE [seed 1]"}  # eval.vanilla=false
    assert "Vanilla" in results["variants"]["template"]["runs"]
    # A results file collected before runs were recorded reads the labels through the registry: same rows.
    legacy = json.loads(json.dumps(results))
    for data in legacy["variants"].values():
        del data["runs"]
    assert method_rows(legacy) == method_rows(results)


def test_rerendering_from_json_keeps_the_configs_first_variant(study, tmp_path):
    from kale_ray.study.report import write_report

    write_report(study)
    numbers = json.loads((tmp_path / "results.json").read_text())
    assert list(numbers["variants"]) == ["hf", "template"]  # written with sorted keys
    (tmp_path / "results.md").unlink()
    write_report(study, from_json=tmp_path / "results.json")
    page = (tmp_path / "results.md").read_text()
    assert "| SFT |" in page and "| KALE · hf |" in page and "· template" not in page


def _predictions(results: Path, label: str, bench: str, correct: list[int]) -> None:
    pair = results / label / bench
    pair.mkdir(parents=True, exist_ok=True)
    (pair / "predictions.jsonl").write_text("".join(json.dumps(
        {"id": f"{bench}-{i}", "type": "mc", "acc": c, "acc_norm": 1 - c if i == 0 else c, "correct": c}) + "\n"
        for i, c in enumerate(correct)))


def test_primary_contrasts_are_paired_over_items_with_intervals(study, tmp_path):
    """KALE right on 20 more of 150 items than SFT, both seeds, never the reverse: +13.3 points, exact
    p = 2 / 2**20, an interval that excludes 0; rows and steps per arm from the train manifests."""
    from kale_ray.study.stats import detectable_difference, mcnemar_exact

    results_dir = tmp_path / "st-template" / "results"
    for seed in (0, 1):
        _predictions(results_dir, f"KALE [seed {seed}]", "arc-easy", [1] * 60 + [0] * 40)
        _predictions(results_dir, f"KALE [seed {seed}]", "absr", [1] * 20 + [0] * 30)
        _predictions(results_dir, f"SFT [seed {seed}]", "arc-easy", [1] * 40 + [0] * 60)
        _predictions(results_dir, f"SFT [seed {seed}]", "absr", [1] * 20 + [0] * 30)
    for name, rows_used in (("sft-s0", 40), ("sft-s1", 40), ("ka-s0", 30), ("ka-s1", 30)):
        (tmp_path / "st-template" / "train" / name / "manifest.json").write_text(
            json.dumps({"counts": {"rows_in": 40, "rows_used": rows_used, "steps": rows_used // 4},
                        "inputs": {"row_ids_sha256": f"ids{rows_used}"}}))
    results = collect(study)
    render(results, tmp_path / "results.md", tmp_path / "results.json", None)
    page = (tmp_path / "results.md").read_text()
    line = next(x for x in page.splitlines() if x.startswith("| KALE vs SFT | KALE | SFT |"))
    assert "| 150 | 0, 1 | +13.3 [" in line and "| 20 / 0 |" in line
    low, high = (float(v) for v in line.split("+13.3 [")[1].split("]")[0].split(", "))
    assert 0 < low < 13.3 < high
    assert f"| {mcnemar_exact(20, 0):.3f} |" in line or "< 0.001" in line
    assert f"{100 * detectable_difference(150, 20 / 150):.1f}" in line
    # acc_norm: item 0 of each benchmark flips for both arms alike, the difference is unchanged.
    assert page.count(line) == 2 and "acc_norm:" in page
    assert "| KALE | 0, 1 | 30 | ids30 | 7 |" in page and "| SFT | 0, 1 | 40 | ids40 | 10 |" in page
    assert "`template`: **the arms did not train on the same rows and steps** (2 row sets, steps 7, 10)" in page
    assert "Detectable difference of the design: with 150 paired items" in page
    assert "not an interval over items" in page
    # Rendered again from the JSON alone (no artifacts), the table is the same.
    import shutil

    again = json.loads(json.dumps(results))
    shutil.rmtree(tmp_path / "st-template")
    render(again, tmp_path / "again.md", tmp_path / "results.json", None)
    assert line in (tmp_path / "again.md").read_text()


def test_page_without_per_item_predictions_says_so(study, tmp_path):
    render(collect(study), tmp_path / "results.md", tmp_path / "results.json", None)
    assert "No primary contrast can be computed" in (tmp_path / "results.md").read_text()


def test_frozen_target_arm_pairs_with_kale_in_its_own_variant(tmp_path):
    """The frozen target is an arm (ka-frozen): the contrast pairs it with KALE of the same variant,
    on the same items, and names the arm's row."""
    from kale_ray.study.contrasts import primary_contrasts

    cfg = load_config(overrides=[
        f"workdir={tmp_path}", "run_name=st", "train.methods=[ka, ka-frozen]", "eval.vanilla=false",
        "study.variants={main: []}"])
    run = tmp_path / "st-main"
    _write_run(run, {"KALE": {"arc-easy": _metrics(0.5)}, "KALE (frozen target)": {"arc-easy": _metrics(0.6)}}, {})
    _predictions(run / "results", "KALE", "arc-easy", [1] * 50 + [0] * 50)
    _predictions(run / "results", "KALE (frozen target)", "arc-easy", [1] * 60 + [0] * 40)
    records = primary_contrasts(collect(cfg))
    frozen = [r for r in records if r["name"] == "frozen vs live target"]
    assert len(frozen) == 1
    assert frozen[0]["a"] == {"variant": "main", "method": "ka-frozen"} and frozen[0]["b"]["method"] == "ka"
    assert frozen[0]["acc"]["a_ahead"] == 10 and frozen[0]["acc"]["b_ahead"] == 0
    pairs = comparisons(collect(cfg))
    assert ("KALE (frozen target)", "KALE", "the target: the initial model's q (frozen) against the live one") in pairs


def test_arms_on_one_row_set_are_said_to_share_it(study, tmp_path):
    for name in ("sft-s0", "sft-s1", "ka-s0", "ka-s1"):
        (tmp_path / "st-template" / "train" / name / "manifest.json").write_text(json.dumps(
            {"counts": {"rows_used": 24, "optimizer_steps": 6}, "inputs": {"row_ids_sha256": "abc"}}))
    render(collect(study), tmp_path / "results.md", tmp_path / "results.json", None)
    page = (tmp_path / "results.md").read_text()
    assert "| SFT | 0, 1 | 24 | abc | 6 |" in page
    assert "- `template`: every arm trained on the same rows (ids hash abc) for 6 optimizer steps." in page
    assert "- `hf`: the train manifests do not record the row ids" in page


def test_writer_degenerate_rate_is_shown_per_rationales_artifact(study, tmp_path):
    (tmp_path / "st-hf" / "synth").mkdir()
    (tmp_path / "st-hf" / "synth" / "manifest.json").write_text(json.dumps({"counts": {"rows": 40}, "extra": {
        "degenerate": {"judged": 40, "degenerate": 6, "rate": 0.15, "kinds": {"no answer": 4, "repeated": 2}}}}))
    render(collect(study), tmp_path / "results.md", tmp_path / "results.json", None)
    page = (tmp_path / "results.md").read_text()
    assert "| hf | hf | KI (with paths) | 40 | 6 | 15.0% | no answer 4, repeated 2 |" in page


def _arm(label_: str, before: float, after: float, kl: tuple[float, float], target: tuple[float, float]) -> dict:
    return {"label": label_, "ce_plain_fell": after < before, "first_loss": 0.9, "last_loss": 0.4,
            "before": {"ce_plain": before, "ce_rationale": target[0], "kl_plain_to_rationale": kl[0]},
            "after": {"ce_plain": after, "ce_rationale": target[1], "kl_plain_to_rationale": kl[1]}}


def test_precheck_section_says_which_arm_did_not_lower_the_ce_and_why(study, tmp_path):
    precheck = {"variant": "template", "rows": 64, "rows_asked": 64, "steps": 50, "arms": {
        "ka": _arm("KALE", 2.0, 2.2, (1.0, 0.3), (1.6, 1.8)),
        "ka-frozen": _arm("KALE (frozen target)", 2.0, 1.7, (1.0, 0.5), (1.6, 1.6)),
        "ka-forward": _arm("KALE (forward KL)", 2.0, 2.1, (1.0, 1.2), (1.6, 1.6)),
        "ka-frozen-bad": {**_arm("KALE (frozen, bad)", 2.0, 2.3, (1.0, 0.5), (1.6, 1.9)), "target": "frozen"}}}
    path = tmp_path / "precheck.json"
    path.write_text(json.dumps(precheck))
    study.study.precheck = path
    render(collect(study), tmp_path / "results.md", tmp_path / "results.json", None)
    page = (tmp_path / "results.md").read_text()
    assert "same 64 training rows (asked: 64) for 50 optimizer steps" in page
    assert "| KALE (frozen target) | 2.000 -> 1.700 | yes | 1.600 -> 1.600 | 1.000 -> 0.500 | 0.900 -> 0.400 |" in page
    assert "- **KALE did not lower the plain view's cross-entropy on the gold answer** (2.000 -> 2.200): the plain " \
           "view moved toward the with-rationale view (KL fell), but that view itself got worse" in page
    assert "- **KALE (forward KL) did not lower" in page and "(KL did not fall)" in page
    assert "frozen target) did not lower" not in page
    # A frozen target cannot drift: its failure is not put down to drift.
    bad = next(x for x in page.splitlines() if x.startswith("- **KALE (frozen, bad) did not lower"))
    assert "drifted" not in bad and "does not put more mass on the gold answer" in bad


def test_page_without_a_precheck_says_none_ran(study, tmp_path):
    study.study.precheck = tmp_path / "none.json"
    render(collect(study), tmp_path / "results.md", tmp_path / "results.json", None)
    assert "No pre-check has run" in (tmp_path / "results.md").read_text()
