"""The hidden-state stage on a real local Ray cluster with the real SmolLM2: vectors equal an
unpadded in-process forward, too-long prompts are counted, a re-run redoes only missing rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kale_ray.artifacts import Manifest, existing_parts, read_parts
from kale_ray.config import load_config
from kale_ray.data.format import prompt_text
from kale_ray.probe.hidden import layer_column, run_hidden_stage

QUESTIONS = [
    "Which gas do plants take in from the air?",
    "What is frozen water called?",
    "Which of these is a mammal that lives in the ocean and breathes air through a blowhole on its head?",
    "Why do leaves change color?",
    "What force pulls objects toward the ground?",
    "Which planet is closest to the Sun?",
    "What do bees make? " * 30,  # over probe.max_length
]
LAYERS = [0, 15, 30]


@pytest.fixture()
def cfg(tmp_path, smollm2_path):
    return load_config(None, [f"workdir={tmp_path}", f"model.name_or_path={smollm2_path}",
                              f"probe.layers={LAYERS}", "probe.batch_size=3", "probe.max_length=64",
                              "probe.worker_cpus=0.5"])


def test_states_equal_in_process_forward_and_resume(ray_local, cfg, tmp_path, smollm2_path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = pa.table({"id": [f"q{i}" for i in range(len(QUESTIONS))], "question": QUESTIONS})
    out = tmp_path / "hidden"
    run_hidden_stage(cfg, rows, out)
    manifest = Manifest.read(out)
    assert manifest.complete and manifest.counts == {"rows": 7, "ok": 6, "too_long": 1, "error": 0}
    table = read_parts(out)
    by_id = {r["id"]: r for r in table.to_pylist()}
    assert by_id["q6"]["hidden_status"] == "too_long" and by_id["q6"][layer_column(30)] is None
    assert "limit 64" in by_id["q6"]["hidden_error"]

    tok = AutoTokenizer.from_pretrained(smollm2_path)
    model = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32).eval()
    for i, question in enumerate(QUESTIONS[:6]):
        ids = tok(prompt_text(question), add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            states = model(input_ids=ids, output_hidden_states=True).hidden_states
        for layer in LAYERS:
            want = states[layer][0, -1].numpy()
            got = np.asarray(by_id[f"q{i}"][layer_column(layer)], dtype=np.float32)
            assert got.shape == want.shape == (model.config.hidden_size,)
            # 1e-5 of the vector's scale: float32 sums in another order (batched, padded) differ by a
            # few ulps per layer, so an absolute 1e-5 is below float32 resolution for large coordinates
            # (measured: 3.8e-5 at a coordinate of 69.9, i.e. 5e-7 relative).
            scale = max(1.0, float(np.abs(want).max()))
            assert float(np.abs(got - want).max()) <= 1e-5 * scale, (question, layer)
    # a crash that lost one part: the re-run redoes those rows only, with no duplicate
    parts = existing_parts(out)
    assert len(parts) >= 2
    lost = parts[max(parts)]
    lost_ids = set(pq.read_table(lost).column("id").to_pylist())
    kept = {p: p.stat().st_mtime_ns for p in parts.values() if p != lost}
    lost.unlink()
    run_hidden_stage(cfg, rows, out)
    again = read_parts(out)
    assert sorted(again.column("id").to_pylist()) == sorted(rows.column("id").to_pylist())
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    redone = {r["id"]: r for r in again.to_pylist() if r["id"] in lost_ids}
    for rid, row in redone.items():
        if row["hidden_status"] == "ok":
            np.testing.assert_allclose(row[layer_column(15)], by_id[rid][layer_column(15)], atol=1e-5)
