"""The run's deliverables from its final checkpoint: `final/` (a plain transformers checkpoint with
the LoRA merged and the tokenizer) and, for LoRA, `adapter/` alone. Done in a Ray task from the
checkpoint in storage (`export_in_task`), so it works wherever the workers ran and the driver never
holds the model (on a cluster it sits on a head node sized for neither a 7B merge nor a GPU)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from kale_ray import storage
from kale_ray.artifacts import Described, describe_files
from kale_ray.train.checkpoint import EXPORT_DIR, read_state


def _replace_dir(tmp: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def export_final(checkpoint_dir: Path, base_model: str, out: Path, lora: bool) -> dict[str, str]:
    from kale_ray.engines.loading import load_causal_lm, load_tokenizer

    source = Path(checkpoint_dir) / EXPORT_DIR
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is missing: the final checkpoint carries no exported weights")
    tokenizer = load_tokenizer(base_model)
    written: dict[str, str] = {}
    tmp = out / f".final.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    if lora:
        adapter_tmp = out / f".adapter.tmp-{os.getpid()}"
        shutil.rmtree(adapter_tmp, ignore_errors=True)
        shutil.copytree(source, adapter_tmp)
        _replace_dir(adapter_tmp, out / "adapter")
        written["adapter"] = str(out / "adapter")
        model = load_causal_lm(base_model, adapters={"default": str(out / "adapter")}).merge_and_unload()
    else:
        model = load_causal_lm(source)
    model.config.use_cache = True
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    _replace_dir(tmp, out / "final")
    written["final"] = str(out / "final")
    return written


def export_in_task(checkpoint: Any, total_steps: int, base_model: str, out: Path, export: bool,
                   lora: bool) -> tuple[dict[str, str], Described]:
    """In a Ray task: check that `checkpoint` (Ray Train's, local or in the store) is the final step,
    export it, publish what it wrote (an object-store workdir) and describe it for the manifest the
    driver writes."""
    with checkpoint.as_directory() as ckpt:
        state = read_state(Path(ckpt))
        if not state.final or state.step != total_steps:
            raise RuntimeError(f"last checkpoint is step {state.step}, expected the final step {total_steps}")
        written = export_final(Path(ckpt), base_model, out, lora) if export else {}
    dirs = [d for d in (out / "final", out / "adapter") if d.is_dir()]
    for d in dirs:
        storage.publish(d)
    return written, describe_files(out, sorted(f for d in dirs for f in d.rglob("*") if f.is_file()))
