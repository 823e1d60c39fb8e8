"""The train stage: tokenise the rows, run Ray Train, export, plot, write the manifest.

`<workdir>/<run>/train/<method>/` holds everything of one method's run. A re-run with the same
config skips a complete run and resumes an interrupted one from its last Ray Train checkpoint; a
run directory left by a different config is cleared first, so a checkpoint never crosses configs.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kale_ray import storage
from kale_ray.artifacts import Manifest, atomic_write_json, atomic_write_parquet, is_complete, read_parts
from kale_ray.config import ConfigError
from kale_ray.data.format import PromptFormat
from kale_ray.methods import TRAINER_METHODS
from kale_ray.train.collate import tokenize_rows
from kale_ray.train.rows import row_ids_hash
from kale_ray.train.trainer import STORAGE_NAME

TOKENS = "tokens.parquet"
RUN_KEY = "run_key.json"


def read_training_rows(method: str, data_dir: Path) -> pa.Table:
    """sft: the data stage's train.parquet; ka and ce-rationale: a rationales artifact's parts."""
    data_dir = Path(data_dir)
    if method == "sft":
        path = data_dir / "train.parquet"
        if not path.is_file():
            raise ConfigError(f"train sft: {path} not found (give the data stage's directory)")
        return pq.read_table(path)
    try:
        table = read_parts(data_dir)
    except FileNotFoundError as err:
        raise ConfigError(f"train {method}: {data_dir} is not a rationales artifact ({err})") from None
    missing = {"question", "gold_text", "rationale", "status"} - set(table.column_names)
    if missing:
        raise ConfigError(f"train {method}: {data_dir} lacks columns {sorted(missing)}")
    return table


def plan_steps(rows: int, workers: int, micro_batch: int, grad_accum: int, epochs: int,
               max_steps: int | None) -> tuple[int, int]:
    """(steps_per_epoch, total_steps). Every worker gets rows // workers rows (an equal split)."""
    per_step = micro_batch * grad_accum
    steps_per_epoch = (rows // workers) // per_step
    if steps_per_epoch < 1:
        raise ConfigError(f"train: {rows} usable rows cannot fill one step of {workers} workers x "
                          f"{micro_batch} rows x {grad_accum} accumulation steps")
    return steps_per_epoch, max_steps or epochs * steps_per_epoch


def _shuffled(table: pa.Table, seed: int) -> pa.Table:
    """A seeded permutation of the rows sorted by id: the order depends on the set of rows and the seed
    only, not on the order an artifact's parts hold them in (Ray Data writes rows as actors finish)."""
    if "id" in table.column_names:
        table = table.sort_by("id")
    order = list(range(table.num_rows))
    random.Random(seed).shuffle(order)
    return table.take(pa.array(order, pa.int64()))


def select_rows(table: pa.Table, method: str, row_ids: list[str]) -> pa.Table:
    """Exactly the rows `row_ids` names (train.rows=shared), or a ConfigError when the source lacks one."""
    present = set(table.column("id").to_pylist())
    missing = sorted(set(row_ids) - present)
    if missing:
        raise ConfigError(f"train {method}: {len(missing)} shared rows are not in its source (e.g. {missing[:3]})")
    return table.filter(pc.is_in(table.column("id"), value_set=pa.array(sorted(set(row_ids)), pa.string())))


def _run_key(cfg: Any, method: str, data_dir: Path, row_ids: list[str] | None = None) -> str:
    source = Manifest.read(data_dir)
    inputs = {"method": method, "data": storage.identity(data_dir),
              "data_hash": source.config_hash if source else None,
              "data_files": source.files if source else None,
              **({"chat_template": True} if cfg.data.chat_template else {}),
              **({"rows": row_ids_hash(row_ids)} if row_ids is not None else {})}
    import hashlib

    base = cfg.section_hash("train", "model", "seed")
    return hashlib.sha256(json.dumps([base, inputs], sort_keys=True).encode()).hexdigest()[:16]


def run_train_stage(cfg: Any, method: str, data_dir: Path, out: Path | None = None,  # noqa: C901
                    row_ids: list[str] | None = None) -> Path:
    """Train `method` on `data_dir`'s rows (only `row_ids`, when given: the arms' shared set,
    kale_ray.train.rows) and write the run's manifest: rows used, their ids' hash, optimizer steps."""
    from kale_ray.engines.registry import resolve_model_in_task
    from kale_ray.ray_utils import init_ray

    if method not in TRAINER_METHODS:
        raise ConfigError(f"train: unknown method {method!r}; expected one of {', '.join(TRAINER_METHODS)}")
    tc = cfg.train.model_copy(update={"method": method})
    out = Path(out or cfg.stage_dir("train") / method)
    rows = read_training_rows(method, Path(data_dir))  # bad input fails before anything is written
    if row_ids is not None:
        rows = select_rows(rows, method, row_ids)
    from kale_ray.train.tracking import check_trackers

    check_trackers(tc.report_to)
    key = _run_key(cfg, method, Path(data_dir), row_ids)
    if is_complete(out, key, fetch=False):  # the weights stay in the store until a stage loads them
        print(f"train[{method}]: {out} is complete for this config, skipping", flush=True)
        return out
    key_file = out / RUN_KEY
    storage.fetch(key_file)
    if key_file.is_file() and json.loads(key_file.read_text()).get("key") != key:
        print(f"train[{method}]: {out} holds a run of another config; starting afresh", flush=True)
        storage.remove(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(key_file, {"key": key})

    started = time.monotonic()
    model_path = resolve_model_in_task(cfg.model.name_or_path, cfg.model.cache_dir, cfg.models_dir)
    from kale_ray.engines.loading import load_tokenizer

    tokenizer = load_tokenizer(model_path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    fmt = PromptFormat(tokenizer, cfg.data.chat_template)  # the chat template of the trained model itself
    tokens, report = tokenize_rows(tokenizer, rows, method, tc.max_length, fmt)
    if row_ids is not None and tokens.num_rows != len(set(row_ids)):
        raise ConfigError(f"train[{method}]: train.rows=shared, but {len(set(row_ids)) - tokens.num_rows} of the "
                          f"{len(set(row_ids))} shared rows are not trainable for {method} ({report.as_dict()})")
    trained_ids = tokens.column("id").to_pylist()
    if tc.shuffle:
        tokens = _shuffled(tokens, cfg.seed)
    atomic_write_parquet(out / TOKENS, tokens)
    steps_per_epoch, total_steps = plan_steps(tokens.num_rows, tc.workers, tc.micro_batch_size, tc.grad_accum,
                                              tc.epochs, tc.max_steps)
    print(f"train[{method}]: {report.rows_used}/{report.rows_in} rows usable "
          f"({json.dumps(report.as_dict())}); {total_steps} steps of {tc.workers} workers x "
          f"{tc.micro_batch_size} x {tc.grad_accum}", flush=True)

    init_ray(cfg.ray)
    import ray.data

    from kale_ray.train.trainer import build_trainer

    cache_dir = None
    if method == "ka" and tc.ka.target == "cached":  # q computed once, shared by every run with this target
        from kale_ray.train.target_cache import attach_cache, ensure_target_cache

        cache_dir = ensure_target_cache(cfg, tc, tokens, model_path, int(pad_id))
    # From the driver's table into the object store: small next to the model, readable by workers on
    # any node (a local path is not), and each epoch's split starts without read tasks competing with
    # the workers for CPUs.
    dataset = ray.data.from_arrow(tokens if cache_dir is None else attach_cache(tokens, cache_dir))
    loop_config = {"train": tc.model_dump(mode="json"), "method": method, "run_dir": str(out.resolve()),
                   "model_path": model_path, "pad_id": int(pad_id), "seed": cfg.seed,
                   "use_gpu": tc.use_gpu, "total_steps": total_steps, "steps_per_epoch": steps_per_epoch,
                   "export": tc.export, "attn_implementation": cfg.model.attn_implementation,
                   "experiment": cfg.run_name, "run_label": out.name}
    try:
        result = build_trainer(tc, out, dataset, loop_config).fit()
        if result.error is not None:
            raise result.error
    except Exception as err:
        raise RuntimeError(f"train[{method}]: training failed ({type(err).__name__}); re-run the same "
                           f"run to resume from its last checkpoint in {out / STORAGE_NAME}: {err}") from err
    if result.checkpoint is None:
        raise RuntimeError(f"train[{method}]: training ended without a checkpoint")

    from kale_ray.env import deepspeed_env
    from kale_ray.train.export import export_in_task
    from kale_ray.train.plot import plot_losses

    # DeepSpeed comes in with peft: told the accelerator, it says nothing about guessing one.
    export = ray.remote(num_cpus=min(tc.cpus_per_worker, 1.0),
                        runtime_env={"env_vars": deepspeed_env(False)})(export_in_task)
    try:
        written, described = ray.get(export.remote(result.checkpoint, total_steps, model_path, out, tc.export,
                                                   tc.lora.enabled))
    except ray.exceptions.RayTaskError as err:
        raise RuntimeError(f"train[{method}]: exporting the final checkpoint failed: {err.cause}") from err
    storage.fetch(out / "metrics.jsonl")  # rank 0's, published from its node
    plot_losses(out / "metrics.jsonl", out / "loss.png", f"{cfg.run_name}: {method}")
    seconds = time.monotonic() - started
    Manifest(stage="train", config_hash=key, config=tc.model_dump(mode="json"),
             inputs={"method": method, "data_dir": str(data_dir), "model": model_path,
                     "rows": "all" if row_ids is None else "shared", "row_ids_sha256": row_ids_hash(trained_ids),
                     **({"target_cache": str(cache_dir)} if cache_dir else {})},
             counts={**report.as_dict(), "steps": total_steps, "optimizer_steps": total_steps,
                     "steps_per_epoch": steps_per_epoch},
             extra={"seconds": round(seconds, 2), "written": written,
                    "checkpoint": result.checkpoint.path, "storage": str(out / STORAGE_NAME),
                    "last_loss": (result.metrics or {}).get("loss"),
                    "nodes": (result.metrics or {}).get("nodes", [])}).write(out, [out / TOKENS, out / "loss.png"],
                                                                          described)
    print(f"train[{method}]: done in {seconds:.0f} s -> {out}", flush=True)
    return out
