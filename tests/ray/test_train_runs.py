"""Real Ray Train runs of the real SmolLM2-135M-Instruct with LoRA on 2 CPU workers over gloo.

Every run trains on the same 4 real ARC-Easy rows (with rationales written in tests/train_data.py):
2 workers x 2 rows = one optimizer step per epoch, so each step sees the same fixed batch.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from kale_ray.artifacts import Manifest, atomic_write_parquet
from kale_ray.config import load_config
from kale_ray.progress import read_metrics
from kale_ray.train.stage import run_train_stage
from tests.train_data import arc_rows, with_rationales, write_rationales

pytestmark = pytest.mark.ray

BASE = ["train.workers=2", "train.cpus_per_worker=0.5", "train.micro_batch_size=2", "train.max_length=128",
        "train.optim.lr=1e-3", "train.optim.schedule=constant", "train.max_steps=3", "train.checkpoint.every=100",
        "train.shuffle=false", "train.zero_stage=2", "train.max_failures=0"]


@pytest.fixture(scope="module")
def rows(data_root) -> pa.Table:
    return with_rationales(arc_rows(data_root, 4))


@pytest.fixture(scope="module")
def rationale_dir(rows, tmp_path_factory) -> Path:
    return write_rationales(rows, tmp_path_factory.mktemp("rationales"))


@pytest.fixture(scope="module")
def sft_dir(rows, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data")
    atomic_write_parquet(out / "train.parquet", rows.drop_columns(["rationale", "status"]))
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


def train(workdir: Path, name: str, method: str, data: Path, *overrides: str) -> tuple[Path, list[dict]]:
    cfg = load_config(None, [f"workdir={workdir}", f"run_name={name}", *BASE, *overrides])
    out = run_train_stage(cfg, method, data)
    metrics = [m for m in read_metrics(out / "metrics.jsonl") if "step" in m]
    return out, metrics


@pytest.fixture(scope="module")
def ka_zero2(ray_local, workdir, rationale_dir):
    return train(workdir, "ka-zero2", "ka", rationale_dir, "train.checkpoint.every=2")


def _losses(metrics: list[dict]) -> list[float]:
    return [m["loss"] for m in sorted(metrics, key=lambda m: m["step"])]


def test_ka_trains_with_zero2_lora_and_exports(ka_zero2, smollm2_path):
    out, metrics = ka_zero2
    losses = _losses(metrics)
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert losses[-1] < losses[0]
    for m in metrics:
        assert m["workers"] == 2 and m["answer_tokens"] > 0 and m["tokens_per_s"] > 0 and m["lr"] == 1e-3
        assert m["kl"] == pytest.approx(m["loss"]) and m["ce"] > 0
    manifest = Manifest.read(out)
    assert manifest.complete and manifest.counts["rows_used"] == 4 and manifest.counts["steps"] == 3
    assert (out / "loss.png").stat().st_size > 1000
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    ckpts = sorted(p.name for p in (out / "ray").glob("step-*"))
    assert ckpts == ["step-000002", "step-000003"]
    shards = sorted(p.name for p in (out / "ray" / "step-000003" / "deepspeed").glob("zero_pp_rank_*"))
    assert len(shards) == 2  # every rank's ZeRO optimizer shard is in the checkpoint
    # the exports: the adapter alone, and a plain checkpoint with the LoRA merged in
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert (out / "adapter" / "adapter_config.json").is_file()
    tok = AutoTokenizer.from_pretrained(out / "final")
    ids = tok("Answer the question.\nQuestion: Which is a plant?\nAnswer: a tree", return_tensors="pt")
    merged = AutoModelForCausalLM.from_pretrained(out / "final")
    base = AutoModelForCausalLM.from_pretrained(smollm2_path)
    with torch.no_grad():
        merged_logits = merged(**ids).logits
        base_logits = base(**ids).logits
        adapted = PeftModel.from_pretrained(base, out / "adapter")(**ids).logits
    assert not hasattr(merged, "peft_config")
    assert torch.allclose(merged_logits, adapted, atol=1e-3)
    assert not torch.allclose(merged_logits, base_logits, atol=1e-3)  # training changed the model


def test_a_complete_run_is_skipped(ka_zero2, workdir, rationale_dir):
    out, metrics = ka_zero2
    before = (out / "manifest.json").read_text()
    cfg = load_config(None, [f"workdir={workdir}", "run_name=ka-zero2", *BASE, "train.checkpoint.every=2"])
    assert run_train_stage(cfg, "ka", rationale_dir) == out
    assert (out / "manifest.json").read_text() == before
    assert len(read_metrics(out / "metrics.jsonl")) == len(metrics)


@pytest.mark.parametrize("method", ["sft", pytest.param("ce-rationale", marks=pytest.mark.slow)])
def test_ce_methods_train_with_zero2(ray_local, workdir, rationale_dir, sft_dir, method):
    data = sft_dir if method == "sft" else rationale_dir
    out, metrics = train(workdir, f"{method}-zero2", method, data, "train.export=false")
    losses = _losses(metrics)
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert all(m["kl"] == 0 and m["ce"] == pytest.approx(m["loss"]) for m in metrics)
    assert not (out / "final").exists()


def test_ka_ddp_agrees_with_zero2_and_reports_to_mlflow(ray_local, workdir, rationale_dir, ka_zero2, monkeypatch):
    """The same three steps under plain DDP give the ZeRO-2 losses: same gradient averaging. Rank 0
    alone reports them to MLflow (a local file store in the run directory), beside TensorBoard."""
    from mlflow.tracking import MlflowClient

    _, zero2 = ka_zero2
    out, ddp = train(workdir, "ka-ddp", "ka", rationale_dir, "train.strategy=ddp", "train.export=false",
                     "train.report_to=[tensorboard, mlflow]")
    assert _losses(ddp) == pytest.approx(_losses(zero2), rel=1e-3)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks readers of a file store to opt in too
    client = MlflowClient(tracking_uri=(out / "mlruns").resolve().as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("ka-ddp").experiment_id])
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == [1, 2, 3]  # one rank logged, once per step
    assert [m.value for m in history] == pytest.approx(_losses(ddp), rel=1e-6)
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_ka_zero3_agrees_with_zero2(ray_local, workdir, rationale_dir, ka_zero2):
    """ZeRO-3 partitions the parameters too; its losses and its export match ZeRO-2's."""
    _, zero2 = ka_zero2
    out, zero3 = train(workdir, "ka-zero3", "ka", rationale_dir, "train.zero_stage=3")
    assert _losses(zero3) == pytest.approx(_losses(zero2), rel=1e-3)
    assert (out / "final" / "model.safetensors").is_file() and (out / "adapter").is_dir()


@pytest.mark.slow
def test_worker_count_does_not_change_the_loss(ray_local, workdir, rationale_dir, ka_zero2):
    """1 worker x 2 rows x 2 accumulation steps = the 2-worker batch: the global token mean is equal,
    though the 4 answers have different token counts (a per-rank mean would differ)."""
    _, zero2 = ka_zero2
    _, single = train(workdir, "ka-1w", "ka", rationale_dir, "train.workers=1", "train.grad_accum=2",
                      "train.export=false")
    assert all(m["workers"] == 1 for m in single)
    assert [m["answer_tokens"] for m in single] == [m["answer_tokens"] for m in zero2]
    assert _losses(single) == pytest.approx(_losses(zero2), rel=1e-3)
