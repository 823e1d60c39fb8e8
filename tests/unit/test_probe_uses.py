"""Uses of the probe: known&incorrect's "known" from the probe (real SmolLM2, real ARC-Easy items),
and the synthesis work record (hand-made paths rows, exact counts)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from kale_ray.config import ConfigError, load_config
from kale_ray.data.benchmarks import load_benchmark
from kale_ray.data.format import prompt_text
from kale_ray.eval.run import run_eval
from kale_ray.probe.mlp import Probe
from kale_ray.probe.uses import pairs_searched, probe_known_flags, select_rows, work_record

LAYER = 15


def test_known_from_probe_in_eval(tmp_path, data_root, smollm2_path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = load_benchmark("arc-easy", data_root, "dev").slice(0, 8)
    tok = AutoTokenizer.from_pretrained(smollm2_path)
    model = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32).eval()
    states = []
    for q in rows.column("question").to_pylist():
        ids = tok(prompt_text(q), add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            states.append(model(input_ids=ids, output_hidden_states=True).hidden_states[LAYER][0, -1].numpy())
    x = np.stack(states)
    rng = np.random.default_rng(0)
    weights = {"w1": (0.05 * rng.normal(size=(4, x.shape[1]))).astype(np.float32), "b1": np.zeros(4, np.float32),
               "w2": np.ones((1, 4), np.float32), "b2": np.zeros(1, np.float32)}
    probe = Probe(LAYER, x.mean(0), x.std(0) + 1e-6, weights)
    z = (x - probe.mean) / probe.std
    logits = (np.maximum(z @ weights["w1"].T, 0) @ weights["w2"].T)[:, 0]
    probe.weights["b2"] = np.array([-np.median(logits)], np.float32)  # half known, half not
    expected = (probe.predict(x) >= 0.5).tolist()
    assert 0 < sum(expected) < len(expected)
    probe.save(tmp_path / "probe" / "probe.npz")

    cfg = load_config(None, ["eval.known_from=probe", f"probe.out={tmp_path / 'probe'}", "eval.engine=local"])
    out = run_eval(cfg, {"vanilla": str(smollm2_path)}, tmp_path / "results", rows=rows)
    preds = [json.loads(line) for line in (out / "vanilla" / "arc-easy" / "predictions.jsonl").read_text().splitlines()]
    assert [p["known"] for p in preds] == expected
    known = json.loads((out / "summary.json").read_text())["vanilla"]["arc-easy"]["known"]
    n_known_incorrect = sum(1 for p, k in zip(preds, expected, strict=True) if k and not p["correct"])
    assert known["items"] == 8 and known["covered"] == 8 and known["known"] == sum(expected)
    assert known["known_incorrect"] == pytest.approx(n_known_incorrect / sum(expected))

    class Served:  # a scorer without an in-process model
        pass

    with pytest.raises(ConfigError, match="in-process"):
        probe_known_flags(Served(), rows.to_pylist(), cfg)
    missing = load_config(None, [f"probe.out={tmp_path / 'nowhere'}"])
    with pytest.raises(ConfigError, match="kale-ray probe"):
        from kale_ray.probe.uses import load_probe

        load_probe(missing)


def test_pairs_and_work_record_exact() -> None:
    paths = pa.table({"q_entities": [["a", "b"], ["a"], [], ["x", "y", "z"]],
                      "a_entities": [["c", "a"], ["a"], ["c"], ["p", "q"]],
                      "nodes_expanded": [10, 0, 0, 32]})
    # row 0: (a,c) (b,c) (b,a) = 3; row 1: only (a,a), skipped = 0; row 2: 0; row 3: 6 capped at 4
    assert pairs_searched(paths, max_pairs_per_row=4) == 7
    select = {"mode": "probe", "rows_total": 10, "rows_selected": 4, "rows_skipped": 6}
    record = work_record(select, paths, tokens=400, max_pairs_per_row=4)
    assert record["pairs_searched"] == 7 and record["nodes_expanded"] == 42 and record["rationale_tokens"] == 400
    assert record["skipped_share"] == 0.6
    assert record["est_pairs_saved"] == round(7 * 6 / 4) and record["est_rationale_tokens_saved"] == 600


def test_select_all_keeps_every_row() -> None:
    cfg = load_config(None, [])
    rows = pa.table({"id": ["a", "b"], "question": ["q1", "q2"]})
    kept, info = select_rows(cfg, rows)
    assert kept.num_rows == 2 and info == {"mode": "all", "rows_total": 2, "rows_selected": 2, "rows_skipped": 0}
