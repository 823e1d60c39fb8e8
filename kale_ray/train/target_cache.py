"""The cached frozen target: q of the initial model, computed once by a Ray Data pass, read by training.

A frozen q never changes, so paying its forward pass at every step of every epoch, seed and arm is
waste. `ensure_target_cache` runs the with-rationale view of every training row once, over an actor
pool (one actor per Ray Train worker, each with that worker's CPUs and GPU, the model loaded through
kale_ray.engines), and keeps at each answer position q's k most likely tokens and the log-mass of the
rest (`losses.topk_target`); training then takes the divergence over those k+1 bins
(`losses.topk_divergence`, docs/method.md) with no target pass at all.

The artifact lives under `<workdir>/target-cache/<key>/`, where the key hashes the model, the dtype,
k, the temperature and every row's target tokens: any run, seed or study arm whose target is the same
reuses it, and one whose target differs gets its own. Parts are written atomically and a re-run sends
only the rows no part holds yet (artifacts.pending_rows), so an interrupted pass resumes.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from kale_ray.artifacts import Manifest, pending_rows, read_parts, write_batches
from kale_ray.config.train import TrainConfig
from kale_ray.progress import Progress

STAGE = "target-cache"
CACHE_COLUMNS = ("topk_ids", "topk_logprobs", "rest_logprob")
CACHE_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("topk_ids", pa.list_(pa.list_(pa.int32()))),          # [answer_len][k]
    ("topk_logprobs", pa.list_(pa.list_(pa.float32()))),   # log q of those ids, at the KL's temperature
    ("rest_logprob", pa.list_(pa.float32())),              # [answer_len]: log of q's remaining mass
])


def cache_dtype(tc: TrainConfig) -> str:
    """The dtype a frozen copy of the model would have (loop.build_model, trainable=False)."""
    return "bfloat16" if tc.precision == "bf16" else "float32"


def row_targets(model: Any, rows: dict[str, list[Any]], pad_id: int, k: int, temperature: float,
                device: Any) -> pa.Table:
    """CACHE_SCHEMA rows of `rows` (id, target_ids, answer_len): one no-grad target-view forward."""
    import torch

    from kale_ray.train.collate import answer_logits, left_pad
    from kale_ray.train.losses import topk_target

    answer_len = [int(n) for n in rows["answer_len"]]
    span = max(answer_len)
    view = left_pad([list(map(int, t)) for t in rows["target_ids"]], pad_id)
    with torch.no_grad():
        logits = model(**{name: v.to(device) for name, v in view.items()}, logits_to_keep=span + 1).logits
        ids, top, rest = (t.cpu() for t in topk_target(answer_logits(logits, span), k, temperature))
    out: dict[str, list[Any]] = {"id": list(rows["id"]), "topk_ids": [], "topk_logprobs": [], "rest_logprob": []}
    for b, n in enumerate(answer_len):
        out["topk_ids"].append(ids[b, span - n:].tolist())
        out["topk_logprobs"].append(top[b, span - n:].tolist())
        out["rest_logprob"].append(rest[b, span - n:].tolist())
    return pa.Table.from_pydict(out, schema=CACHE_SCHEMA)


class TargetCacheActor:
    """One Ray Data actor: loads the frozen model once, then maps token rows to their cached q."""

    def __init__(self, model_path: str, dtype: str, k: int, temperature: float, pad_id: int, batch_size: int,
                 use_gpu: bool) -> None:
        import torch

        from kale_ray.engines.loading import load_causal_lm

        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.model = load_causal_lm(model_path, dtype=dtype).to(self.device)
        self.k, self.temperature, self.pad_id, self.batch_size = k, temperature, pad_id, batch_size

    def __call__(self, batch: pa.Table) -> pa.Table:
        parts = [row_targets(self.model, batch.slice(i, self.batch_size).to_pydict(), self.pad_id, self.k,
                             self.temperature, self.device) for i in range(0, batch.num_rows, self.batch_size)]
        return pa.concat_tables(parts)


def cache_key(tc: TrainConfig, tokens: pa.Table, model_path: str) -> str:
    """Everything q's cache depends on; not the seed, the row order or the student's view."""
    digest = hashlib.sha256()
    for row in sorted(tokens.select(["id", "target_ids", "answer_len"]).to_pylist(), key=lambda r: r["id"]):
        digest.update(json.dumps([row["id"], row["target_ids"], row["answer_len"]]).encode())
    key = {"model": str(model_path), "dtype": cache_dtype(tc), "k": tc.ka.target_topk,
           "temperature": tc.ka.temperature, "rows": digest.hexdigest()}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def ensure_target_cache(cfg: Any, tc: TrainConfig, tokens: pa.Table, model_path: str, pad_id: int,
                        root: Path | None = None) -> Path:
    """The cache directory of these token rows' target, computed (or completed) when missing."""
    key = cache_key(tc, tokens, model_path)
    out = Path(root or cfg.workdir_path / STAGE) / key
    pending = pending_rows(out, STAGE, key, tokens.select(["id", "target_ids", "answer_len"]))
    if pending is None:
        return out
    started = time.monotonic()
    if pending.todo.num_rows:
        _run_actors(cfg, tc, pending.todo, model_path, pad_id, out, pending.next_part)
    ids = read_parts(out).column("id").to_pylist()
    if len(ids) != tokens.num_rows or set(ids) != set(tokens.column("id").to_pylist()):
        raise RuntimeError(f"{STAGE}: {out} holds {len(ids)} rows for {tokens.num_rows} training rows; "
                           "remove the directory and run again")
    Manifest(stage=STAGE, config_hash=key,
             config={"k": tc.ka.target_topk, "temperature": tc.ka.temperature, "dtype": cache_dtype(tc)},
             inputs={"model": model_path}, counts={"rows": len(ids)},
             extra={"seconds": round(time.monotonic() - started, 2)},
             ).write(out, hash_files=sorted(out.glob("part-*.parquet")))
    print(f"{STAGE}: {len(ids)} rows -> {out}", flush=True)
    return out


def _run_actors(cfg: Any, tc: TrainConfig, todo: pa.Table, model_path: str, pad_id: int, out: Path,
                next_index: int) -> None:
    import ray.data
    from ray.data import ActorPoolStrategy

    from kale_ray.ray_utils import init_ray

    init_ray(cfg.ray)
    size = tc.micro_batch_size
    block = size * 4  # rows per part file
    blocks = [todo.slice(i, block) for i in range(0, todo.num_rows, block)]
    ds = ray.data.from_arrow(blocks).map_batches(
        TargetCacheActor, batch_size=block, batch_format="pyarrow",
        compute=ActorPoolStrategy(size=max(1, min(tc.workers, len(blocks)))),
        num_cpus=tc.cpus_per_worker, num_gpus=1 if tc.use_gpu else 0,
        fn_constructor_kwargs={"model_path": model_path, "dtype": cache_dtype(tc), "k": tc.ka.target_topk,
                               "temperature": tc.ka.temperature, "pad_id": pad_id, "batch_size": size,
                               "use_gpu": tc.use_gpu})
    progress = Progress(STAGE, todo.num_rows, metrics_path=out / "metrics.jsonl")
    write_batches(out, ds.iter_batches(batch_size=None, batch_format="pyarrow"), next_index, progress)
    progress.close()


def attach_cache(tokens: pa.Table, cache: Path | pa.Table) -> pa.Table:
    """`tokens` (in its order) with the cache's columns (a cache directory's or a table's) appended,
    matched by row id."""
    where = cache
    cache = (cache if isinstance(cache, pa.Table) else read_parts(cache)).select(["id", *CACHE_COLUMNS])
    index = pc.index_in(tokens.column("id"), cache.column("id"))
    if index.null_count:
        raise RuntimeError(f"{STAGE}: {where if isinstance(where, Path) else 'the cache'} lacks "
                           f"{index.null_count} of the training rows")
    picked = cache.take(index)
    for name in CACHE_COLUMNS:
        tokens = tokens.append_column(name, picked.column(name))
    return tokens
