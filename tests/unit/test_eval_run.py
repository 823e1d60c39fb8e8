"""In-process evaluation with the real SmolLM2-135M-Instruct on real ARC-Easy and BBH items."""

import json

import pyarrow as pa
import pytest

from kale_ray.config import load_config
from kale_ray.data.benchmarks import load_benchmark
from kale_ray.data.format import answer_text, prompt_text
from kale_ray.eval.run import run_eval


@pytest.fixture(scope="module")
def rows(data_root):
    arc = load_benchmark("arc-easy", data_root, "dev").slice(0, 5)
    bbh = load_benchmark("bbh-boolean_expressions", data_root).slice(0, 2)
    return pa.concat_tables([arc, bbh])


@pytest.fixture(scope="module")
def results(tmp_path_factory, rows, smollm2_path, tiny_llama_path, data_root):
    """known&incorrect's key facts from the real WordNet paths of the ARC-Easy rows (some have none)."""
    from tests.known_support import kg_dir, search_paths

    out = tmp_path_factory.mktemp("eval")
    wordnet = kg_dir("wordnet", data_root)
    cfg = load_config(None, ["eval.max_new_tokens=8", "eval.engine=local", f"eval.kg={wordnet}"])
    probes = search_paths(rows.slice(0, 5).to_pylist(), wordnet)
    run_eval(cfg, {"vanilla": str(smollm2_path), "tiny": str(tiny_llama_path)}, out,
             rows=rows, probes=probes)
    return out, cfg, probes


def _preds(out, method, bench):
    return [json.loads(line) for line in (out / method / bench / "predictions.jsonl").read_text().splitlines()]


def test_results_directory(results):
    out, _, probes = results
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"vanilla", "tiny"}
    for method in summary:
        arc, bbh = _preds(out, method, "arc-easy"), _preds(out, method, "bbh-boolean_expressions")
        assert len(arc) == 5 and len(bbh) == 2
        assert summary[method]["arc-easy"]["acc"] == pytest.approx(sum(p["acc"] for p in arc) / 5)
        assert summary[method]["arc-easy"]["acc_norm"] == pytest.approx(sum(p["acc_norm"] for p in arc) / 5)
        assert summary[method]["bbh-boolean_expressions"]["exact_match"] == pytest.approx(
            sum(p["exact_match"] for p in bbh) / 2)
        assert all(p["type"] == "generative" and "generated" in p for p in bbh)
        # every ARC item with a path has a key fact here; an item without one is counted, not covered
        covered = [p for p in arc if "fact" in p]
        with_path = [r["id"] for r in probes.to_pylist() if r["path_status"] == "ok"]
        assert [p["id"] for p in covered] == with_path and 0 < len(covered) < 5
        known = summary[method]["arc-easy"]["known"]
        assert (known["items"], known["covered"]) == (5, len(covered))
        assert known["known"] == sum(p["known"] for p in covered)
        assert all(p["known"] is None for p in arc if "fact" not in p)
        assert known["reference"] == pytest.approx(sum(1 - p["correct"] for p in covered) / len(covered))
        assert summary[method]["bbh-boolean_expressions"]["known"]["covered"] == 0
    # two different models: different log-likelihoods for the same options
    assert _preds(out, "vanilla", "arc-easy")[0]["lls"] != _preds(out, "tiny", "arc-easy")[0]["lls"]
    table = (out / "table.md").read_text()
    assert "| vanilla |" in table and "| tiny |" in table and "known&incorrect" in table
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "manifest.json").read_text())["complete"] is True


def test_option_loglikelihoods_equal_a_direct_transformers_computation(results, rows, smollm2_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _, _ = results
    pred = _preds(out, "vanilla", "arc-easy")[0]
    row = rows.slice(0, 1).to_pylist()[0]
    tok = AutoTokenizer.from_pretrained(smollm2_path)
    model = AutoModelForCausalLM.from_pretrained(smollm2_path).eval()
    context = prompt_text(row["question"])
    for option, ll in zip(row["choices"], pred["lls"], strict=True):
        ctx = tok(context, add_special_tokens=False).input_ids
        full = tok(context + answer_text(option), add_special_tokens=False).input_ids
        with torch.no_grad():
            logp = model(torch.tensor([full])).logits[0].log_softmax(-1)
        direct = sum(float(logp[i - 1, full[i]]) for i in range(len(ctx), len(full)))
        assert ll == pytest.approx(direct, abs=1e-4)
    assert pred["pred"] == max(range(len(pred["lls"])), key=pred["lls"].__getitem__)


def test_rerun_skips_complete_pairs_and_redoes_a_missing_one(results, rows, smollm2_path, capsys):
    out, cfg, probes = results
    before = (out / "vanilla" / "arc-easy" / "metrics.json").stat().st_mtime_ns
    (out / "vanilla" / "bbh-boolean_expressions" / "metrics.json").unlink()
    arc_only = rows.slice(0, 5)
    bbh_only = rows.slice(5, 2)
    run_eval(cfg, {"vanilla": str(smollm2_path)}, out, rows=pa.concat_tables([arc_only, bbh_only]),
             probes=probes)
    log = capsys.readouterr().out
    assert "vanilla/arc-easy is complete, skipping" in log
    assert "vanilla/bbh-boolean_expressions: accuracy" in log
    assert (out / "vanilla" / "arc-easy" / "metrics.json").stat().st_mtime_ns == before
    assert len(_preds(out, "vanilla", "bbh-boolean_expressions")) == 2


def test_pipeline_eval_stage_scores_the_data_stage_test_split(tmp_path, data_root, tiny_llama_path):
    from kale_ray.data.stage import run_data_stage
    from kale_ray.eval.run import run_eval_stage

    cfg = load_config(None, [f"workdir={tmp_path}", f"data_root={data_root}", f"model.name_or_path={tiny_llama_path}",
                             "data.limit_test=3", "train.methods=[sft]", "eval.engine=local"])
    run_data_stage(cfg)
    final = cfg.stage_dir("train") / "sft" / "final"
    final.parent.mkdir(parents=True)
    final.symlink_to(tiny_llama_path)
    out = run_eval_stage(cfg)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"Vanilla", "SFT"}  # the pipeline's display labels
    assert summary["Vanilla"]["arc-easy"]["n"] == 3 == summary["SFT"]["arc-easy"]["n"]
    # With seeds, each seed's run is its own model; eval.vanilla=false leaves the base model out.
    seeded = cfg.model_copy(update={
        "train": cfg.train.model_copy(update={"seeds": [3, 4]}), "eval": cfg.eval.model_copy(update={"vanilla": False})})
    for seed in (3, 4):
        (seeded.stage_dir("train") / f"sft-s{seed}").mkdir()
        (seeded.stage_dir("train") / f"sft-s{seed}" / "final").symlink_to(tiny_llama_path)
    from kale_ray.eval.run import pipeline_models

    assert pipeline_models(seeded) == {f"SFT [seed {s}]": str(seeded.stage_dir("train") / f"sft-s{s}" / "final")
                                       for s in (3, 4)}


def test_eval_threads_fix_the_scoring_thread_count(tiny_llama_path):
    """eval.threads, not the machine's core count, sets in-process scoring's torch threads."""
    import torch

    from kale_ray.eval.scorers import open_scorer

    before = torch.get_num_threads()
    try:
        for threads in (1, 3):
            cfg = load_config(None, [f"model.name_or_path={tiny_llama_path}", f"eval.threads={threads}"])
            open_scorer(str(tiny_llama_path), cfg).close()
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
