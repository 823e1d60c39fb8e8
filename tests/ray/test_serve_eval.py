"""Evaluation through the Serve API: `kale-ray eval` with concurrent requests agrees with in-process
scoring, and lm-evaluation-harness (`local-completions`, a local task file, no hub) agrees with
`kale-ray eval` on the same real ARC-Easy items."""

from __future__ import annotations

import json

import pytest

from kale_ray.cli import main
from kale_ray.config import load_config
from kale_ray.data.benchmarks import load_benchmark
from kale_ray.data.format import prompt_text
from kale_ray.ray_utils import free_port
from tests.ray.serve_helpers import API_KEY, API_KEY_ENV, running_app, write_key_file

# Slow: served == in-process is also checked by tests/ray/test_eval_served.py in the default suite.
pytestmark = [pytest.mark.ray, pytest.mark.slow]

N_ITEMS = 20


@pytest.fixture(scope="module")
def arc_file(tmp_path_factory, data_root):
    """Real ARC-Easy rows as a local file both harnesses read: kale-ray's user JSONL format plus the
    `prompt` field the lm-eval task template uses."""
    rows = load_benchmark("arc-easy", data_root, "test").slice(0, N_ITEMS).to_pylist()
    path = tmp_path_factory.mktemp("bench") / "arc_local.jsonl"
    with open(path, "w") as fh:
        for r in rows:
            fh.write(json.dumps({"question": r["question"], "choices": r["choices"], "gold": r["gold"],
                                 "prompt": prompt_text(r["question"])}) + "\n")
    return path


@pytest.fixture(scope="module")
def api(ray_local, tmp_path_factory, smollm2_path):
    import os

    os.environ[API_KEY_ENV] = API_KEY
    models = json.dumps([{"name": "smollm2", "path": str(smollm2_path), "adapters": {}}])
    cfg = load_config(None, [f"serve.models={models}", f"serve.port={free_port()}", "serve.replica_cpus=0.5",
                             f"serve.api_key_file={write_key_file(tmp_path_factory.mktemp('key'))}"])
    with running_app(cfg, "evaltest") as base:
        yield base + "/v1"


@pytest.fixture(scope="module")
def kale_results(tmp_path_factory, api, arc_file, smollm2_path):
    out = tmp_path_factory.mktemp("results")
    code = main(["eval", "--model", f"local={smollm2_path}", "--model", f"served={api}#smollm2",
                 "--benchmark", str(arc_file), "--out", str(out), "eval.concurrency=4", "eval.engine=local",
                 f"eval.api_key_env={API_KEY_ENV}"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    preds = {m: [json.loads(x) for x in (out / m / "arc_local" / "predictions.jsonl").read_text().splitlines()]
             for m in ("local", "served")}
    return summary, preds


def test_served_scoring_equals_in_process_scoring(kale_results):
    summary, preds = kale_results
    assert len(preds["served"]) == N_ITEMS
    for local, served in zip(preds["local"], preds["served"], strict=True):
        assert local["id"] == served["id"]
        assert served["lls"] == pytest.approx(local["lls"], abs=1e-3)
        assert (served["pred"], served["pred_norm"]) == (local["pred"], local["pred_norm"])
    assert summary["served"]["arc_local"]["acc"] == summary["local"]["arc_local"]["acc"]
    # Above chance (0.25 for four options): the echoed log-probs carry signal.
    assert summary["served"]["arc_local"]["acc"] > 0.3


def test_lm_eval_local_completions_agrees_with_kale_ray_eval(kale_results, api, arc_file, smollm2_path,
                                                            tmp_path, monkeypatch):
    import lm_eval
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    (tmp_path / "arc_local.yaml").write_text(f"""
task: kale_arc_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {arc_file}
test_split: test
output_type: multiple_choice
doc_to_text: prompt
doc_to_choice: choices
doc_to_target: gold
metric_list:
  - metric: acc
  - metric: acc_norm
""")
    results = lm_eval.simple_evaluate(
        model="local-completions",
        model_args={"base_url": f"{api}/completions", "model": "smollm2", "tokenizer": str(smollm2_path),
                    "tokenizer_backend": "huggingface", "num_concurrent": 2, "max_retries": 3},
        tasks=["kale_arc_local"], task_manager=TaskManager(include_path=str(tmp_path)))
    got = results["results"]["kale_arc_local"]
    summary, _ = kale_results
    ours = summary["local"]["arc_local"]
    assert abs(got["acc,none"] - ours["acc"]) <= 0.01
    assert abs(got["acc_norm,none"] - ours["acc_norm"]) <= 0.01
    assert got["acc,none"] > 0.3  # not the chance score of silently missing echo log-probs
