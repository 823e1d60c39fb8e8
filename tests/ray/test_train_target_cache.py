"""The cached frozen target on a real local Ray cluster: the Ray Data pass writes what the trainer's
own in-process computation gives, resumes after losing a part, and a training run reads it, with a
second seed reusing the same cache instead of computing it again."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch

from kale_ray.artifacts import Manifest, existing_parts, is_complete, read_parts
from kale_ray.config import load_config
from kale_ray.progress import read_metrics
from kale_ray.train.collate import tokenize_rows
from kale_ray.train.target_cache import attach_cache, cache_key, ensure_target_cache, row_targets
from tests.train_data import arc_rows, with_rationales, write_rationales

pytestmark = pytest.mark.ray

CACHE = ["train.workers=2", "train.cpus_per_worker=0.5", "train.micro_batch_size=1", "train.ka.target_topk=8",
         "train.ka.target=cached"]


def test_cache_pass_matches_in_process_and_resumes(ray_local, tiny_llama_path, data_root, tmp_path):
    from kale_ray.engines.loading import load_causal_lm, load_tokenizer

    path = str(tiny_llama_path)
    tokenizer = load_tokenizer(path)
    tokens, _ = tokenize_rows(tokenizer, with_rationales(arc_rows(data_root, 6)), "ka", 128)
    cfg = load_config(None, [f"workdir={tmp_path}", *CACHE])
    tc, pad = cfg.train, tokenizer.pad_token_id
    out = ensure_target_cache(cfg, tc, tokens, path, pad)
    assert out == tmp_path / "target-cache" / cache_key(tc, tokens, path)
    assert is_complete(out, cache_key(tc, tokens, path)) and Manifest.read(out).counts == {"rows": 6}
    parts = existing_parts(out)
    assert len(parts) == 2  # 4 rows per part

    expected = row_targets(load_causal_lm(path, dtype="float32"), tokens.to_pydict(), pad, 8, 1.0,
                           torch.device("cpu"))
    got = attach_cache(tokens.select(["id"]), out)
    for name in ("topk_logprobs", "rest_logprob"):
        assert torch.allclose(torch.tensor(sum(got.column(name).to_pylist(), [])),
                              torch.tensor(sum(expected.column(name).to_pylist(), [])), atol=1e-4)
    assert got.column("topk_ids").to_pylist() == expected.column("topk_ids").to_pylist()
    assert [len(a) for a in got.column("rest_logprob").to_pylist()] == tokens.column("answer_len").to_pylist()

    # A lost part: the manifest goes, a re-run computes only that part's rows and leaves the other alone.
    kept = pq.read_table(parts[0]).column("id").to_pylist()
    mtime = parts[0].stat().st_mtime_ns
    parts[1].unlink()
    (out / "manifest.json").unlink()
    assert ensure_target_cache(cfg, tc, tokens, path, pad) == out
    assert parts[0].stat().st_mtime_ns == mtime and is_complete(out, cache_key(tc, tokens, path))
    assert sorted(read_parts(out).column("id").to_pylist()) == sorted(tokens.column("id").to_pylist())
    assert len(kept) == 4
    # Another k is another target: another cache.
    other = cfg.train.model_copy(update={"ka": cfg.train.ka.model_copy(update={"target_topk": 4})})
    assert cache_key(other, tokens, path) != cache_key(tc, tokens, path)


@pytest.mark.slow
def test_cached_target_trains_and_seeds_share_the_cache(ray_local, data_root, tmp_path):
    from kale_ray.train.stage import run_train_stage

    data = write_rationales(with_rationales(arc_rows(data_root, 4)), tmp_path / "rationales")
    base = [f"workdir={tmp_path}", "run_name=cached", *CACHE, "train.micro_batch_size=2", "train.max_length=128",
            "train.optim.lr=1e-3", "train.optim.schedule=constant", "train.max_steps=2", "train.export=false",
            "train.max_failures=0", "train.strategy=ddp", "train.ka.target_topk=256"]
    runs = []
    for seed in (1, 2):
        cfg = load_config(None, [*base, f"seed={seed}"])
        out = run_train_stage(cfg, "ka", data, cfg.stage_dir("train") / f"ka-s{seed}")
        runs.append(Manifest.read(out).inputs["target_cache"])
        metrics = [m for m in read_metrics(out / "metrics.jsonl") if "step" in m]
        assert len(metrics) == 2 and all(m["kl"] > 0 for m in metrics)
    assert runs[0] == runs[1]  # the same target: one cache, computed once
    assert len(list((tmp_path / "target-cache").iterdir())) == 1
