"""The pre-check on a tiny setting: every KA arm of the study's first variant trains on the same few
shared rows for a few steps, and the JSON holds, per arm, the plain view's CE on the gold answer before
(the base model) and after (the trained arm), which the results page renders. The trained model is the
tiny random Llama and the writer the template (paths verbalised), so the run is small; the "before"
figure is checked against transformers computing the same CE directly."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from kale_ray.config import load_config
from kale_ray.study.precheck import precheck_lines, run_precheck

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _plain_ce(model_path: Path, rows: list[dict]) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for row in rows:
            ids, span = torch.tensor([row["student_ids"]]), row["answer_len"]
            logits = model(ids).logits[0, -span - 1:-1]
            total += torch.nn.functional.cross_entropy(logits, ids[0, -span:], reduction="sum").item()
            tokens += span
    return total / tokens


@pytest.mark.timeout(1800)
def test_precheck_trains_each_ka_arm_on_shared_rows_and_measures_the_plain_view(
        ray_local, tmp_path, data_root, tiny_llama_path):
    cfg = load_config(REPO / "configs" / "tiny.yaml", [
        f"workdir={tmp_path}", f"data_root={data_root}", f"model.name_or_path={tiny_llama_path}",
        "data.limit_train=32", "train.methods=[sft, ka, ka-frozen, ka-forward]", "train.workers=1",
        "train.micro_batch_size=2", "train.optim.lr=0.01", "study.variants={main: []}",
        f"study.precheck={tmp_path / 'precheck.json'}"])
    path = run_precheck(cfg, rows=4, steps=3)
    record = json.loads(path.read_text())
    assert record["rows"] == 4 and record["steps"] == 3 and record["variant"] == "main"
    assert sorted(record["arms"]) == ["ka", "ka-forward", "ka-frozen"]  # the KA arms only, not SFT
    tokens = {arm: pq.read_table(Path(r["train_dir"]) / "tokens.parquet").sort_by("id").to_pylist()
              for arm, r in record["arms"].items()}
    assert len({tuple(r["id"] for r in rows) for rows in tokens.values()}) == 1  # the same 4 rows for every arm
    before = _plain_ce(tiny_llama_path, tokens["ka"])
    for arm, r in record["arms"].items():
        manifest = json.loads((Path(r["train_dir"]) / "manifest.json").read_text())
        assert manifest["counts"]["optimizer_steps"] == 3 and manifest["counts"]["rows_used"] == 4, arm
        assert r["before"]["ce_plain"] == pytest.approx(before, abs=1e-3), arm
        assert r["after"]["ce_plain"] != r["before"]["ce_plain"], arm  # training moved the plain view
        assert r["ce_plain_fell"] == (r["after"]["ce_plain"] < r["before"]["ce_plain"])
        assert r["before"]["answer_tokens"] == sum(x["answer_len"] for x in tokens[arm])
    lines = "\n".join(precheck_lines(record))
    assert "the same 4 training rows" in lines and "| KALE (forward KL) |" in lines
