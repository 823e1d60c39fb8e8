"""The run's deliverables from its final checkpoint: `final/` (a plain transformers checkpoint with
the LoRA merged and the tokenizer) and, for LoRA, `adapter/` alone. Done on the driver from the
checkpoint in storage, so it works wherever the workers ran."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from kale_ray.train.checkpoint import EXPORT_DIR


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
