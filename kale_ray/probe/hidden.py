"""Last-token hidden states of each question's scoring prompt, as a Ray Data stage.

`map_batches` runs over an actor pool (`ActorPoolStrategy(size=probe.workers)`, fractional CPUs);
each actor loads the model once. One forward pass with `output_hidden_states` gives every layer, so a
sweep over layers costs one pass. Sequences are right-padded: with a causal mask a token never attends
to the padding after it, so the last real token's state does not depend on the batch (tested against
one unpadded forward per row). The driver writes each finished block as a numbered Parquet part,
atomically; a re-run sends only the ids not yet written. A prompt longer than `probe.max_length` (default
the model's context) gets `hidden_status="too_long"`, any other failure `"error"`; both are counted.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kale_ray.artifacts import Manifest, existing_parts, pending_rows, write_batches
from kale_ray.data.format import prompt_text
from kale_ray.progress import Progress

STATUSES = ("ok", "too_long", "error")


def layer_column(layer: int) -> str:
    return f"h{layer}"


def check_layers(model: Any, layers: list[int]) -> None:
    n = int(model.config.num_hidden_layers)
    bad = [layer for layer in layers if not 0 <= layer <= n]
    if bad:
        raise ValueError(f"probe.layers {bad} out of range: this model has hidden states 0..{n}")


def last_token_states(model: Any, seqs: list[list[int]], layers: list[int], pad_id: int) -> np.ndarray:
    """[rows, len(layers), hidden] float32: each sequence's last token state at each layer, one
    right-padded forward for all of them."""
    import torch

    device = next(model.parameters()).device
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    with torch.no_grad():
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=True,
                    logits_to_keep=1)
    last = torch.tensor([len(s) - 1 for s in seqs], device=device)
    rows = torch.arange(len(seqs), device=device)
    return torch.stack([out.hidden_states[layer][rows, last] for layer in layers], 1).float().cpu().numpy()


class HiddenStatesActor:
    """One Ray Data actor: loads the model once, then maps batches of question rows to states."""

    def __init__(self, model_path: str, layers: list[int], dtype: str, max_length: int | None,
                 batch_size: int) -> None:
        from kale_ray.engines.loading import load_causal_lm, load_tokenizer

        self.tokenizer = load_tokenizer(model_path)
        self.model = load_causal_lm(model_path, dtype=dtype)
        check_layers(self.model, layers)
        self.layers, self.batch_size = layers, batch_size
        context = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)
        self.max_length = min(max_length or context, context)
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else (self.tokenizer.eos_token_id or 0))

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        status, error = ["ok"] * len(rows), [None] * len(rows)
        states: list[np.ndarray | None] = [None] * len(rows)
        seqs: dict[int, list[int]] = {}
        for i, row in enumerate(rows):
            try:
                seq = list(self.tokenizer(prompt_text(row["question"]), add_special_tokens=False).input_ids)
                if len(seq) > self.max_length:
                    status[i], error[i] = "too_long", f"prompt has {len(seq)} tokens, limit {self.max_length}"
                elif not seq:
                    status[i], error[i] = "error", "empty prompt"
                else:
                    seqs[i] = seq
            except Exception as err:  # a bad row is counted, never a crashed job
                status[i], error[i] = "error", f"{type(err).__name__}: {err}"
        todo = list(seqs)
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            found = last_token_states(self.model, [seqs[i] for i in chunk], self.layers, self.pad_id)
            for j, i in enumerate(chunk):
                states[i] = found[j]
        out = pa.table({"id": batch.column("id"), "hidden_status": pa.array(status, pa.string()),
                        "hidden_error": pa.array(error, pa.string())})
        for k, layer in enumerate(self.layers):
            values = [None if s is None else s[k].tolist() for s in states]
            out = out.append_column(layer_column(layer), pa.array(values, pa.list_(pa.float32())))
        return out


def stage_hash(cfg: Any, rows: pa.Table, model_path: str) -> str:
    ids = hashlib.sha256("\n".join(sorted(rows.column("id").to_pylist())).encode()).hexdigest()
    key = {"model": str(model_path), "dtype": cfg.model.dtype, "layers": cfg.probe.layers,
           "max_length": cfg.probe.max_length, "ids": ids}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def run_hidden_stage(cfg: Any, rows: pa.Table, out: Path, model_path: str | None = None) -> Path:
    """Hidden states of `rows` (unique ids) into `out`; resumes, skips when complete for this config."""
    from kale_ray.engines.registry import resolve_model_in_task

    out = Path(out)
    model_path = str(model_path or resolve_model_in_task(cfg.model.name_or_path, cfg.model.cache_dir, cfg.models_dir))
    config_hash = stage_hash(cfg, rows, model_path)
    pending = pending_rows(out, "probe-hidden", config_hash, rows)
    if pending is None:
        return out
    t0 = time.monotonic()
    if pending.todo.num_rows:
        _run_actors(cfg, pending.todo.select(["id", "question"]), model_path, out, pending.next_part)
    table = pa.concat_tables([pq.read_table(p, columns=["id", "hidden_status"])
                              for p in existing_parts(out).values()])
    ids = table.column("id").to_pylist()
    if len(ids) != rows.num_rows or set(ids) != set(rows.column("id").to_pylist()):
        raise RuntimeError(f"probe hidden: {out} holds {len(ids)} rows for {rows.num_rows} input rows; "
                           "remove the directory and run again")
    status = Counter(table.column("hidden_status").to_pylist())
    counts = {"rows": len(ids), **{s: status.get(s, 0) for s in STATUSES}}
    Manifest(stage="probe-hidden", config_hash=config_hash,
             config={"layers": cfg.probe.layers, "max_length": cfg.probe.max_length, "dtype": cfg.model.dtype},
             inputs={"model": model_path}, counts=counts,
             extra={"seconds": round(time.monotonic() - t0, 2)},
             ).write(out, hash_files=sorted(out.glob("part-*.parquet")))
    print(f"probe hidden: {counts} -> {out}", flush=True)
    return out


def _run_actors(cfg: Any, todo: pa.Table, model_path: str, out: Path, next_index: int) -> None:
    import ray.data
    from ray.data import ActorPoolStrategy

    from kale_ray.ray_utils import init_ray

    init_ray(cfg.ray)
    size = cfg.probe.batch_size
    blocks = [todo.slice(i, size) for i in range(0, todo.num_rows, size)]
    ds = ray.data.from_arrow(blocks).map_batches(
        HiddenStatesActor, batch_size=size, batch_format="pyarrow",
        compute=ActorPoolStrategy(size=max(1, min(cfg.probe.workers, len(blocks)))), num_cpus=cfg.probe.worker_cpus,
        num_gpus=cfg.probe.worker_gpus,
        fn_constructor_kwargs={"model_path": model_path, "layers": list(cfg.probe.layers),
                               "dtype": cfg.model.dtype, "max_length": cfg.probe.max_length,
                               "batch_size": size})
    progress = Progress("probe hidden", todo.num_rows, metrics_path=out / "metrics.jsonl")
    write_batches(out, ds.iter_batches(batch_size=None, batch_format="pyarrow"), next_index, progress)
    progress.close()


def read_states(out: Path, layer: int) -> tuple[list[str], np.ndarray]:
    """(ids, [n, hidden] float32) of the rows whose states were extracted, at one layer."""
    from kale_ray.artifacts import read_parts

    table = read_parts(Path(out))
    table = table.filter(pc.equal(table.column("hidden_status"), "ok"))
    column = layer_column(layer)
    if column not in table.column_names:
        raise ValueError(f"layer {layer} was not extracted into {out}")
    values = table.column(column).to_pylist()
    return table.column("id").to_pylist(), np.asarray(values, dtype=np.float32).reshape(len(values), -1)
