"""A hub model id is downloaded once into the workdir's shared model directory, here an S3 store, and a
node with an empty mirror loads it from there. These machines reach no hub, so the hub is a hub cache
laid out as huggingface_hub writes it (a small random Llama with the real SmolLM2 tokenizer), read in
offline mode: the same `snapshot_download` call a cluster makes, answered from the cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kale_ray import storage
from kale_ray.config import KaleConfig
from kale_ray.engines.registry import ModelError, download_hub_model, is_hub_id, resolve_model_in_task

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture
def hub_cache(tmp_path, tiny_llama_path, monkeypatch):
    """`models--HuggingFaceTB--SmolLM2-135M-Instruct` with a ref and a snapshot of symlinks to blobs."""
    repo = tmp_path / "hub" / f"models--{HUB_ID.replace('/', '--')}"
    commit = "0" * 40
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for i, file in enumerate(sorted(p for p in Path(tiny_llama_path).iterdir())):
        blob = repo / "blobs" / f"blob{i}"
        shutil.copyfile(file, blob)
        (snapshot / file.name).symlink_to(blob)
    _hub_cache(monkeypatch, tmp_path / "hub")
    return snapshot


def _hub_cache(monkeypatch, path: Path) -> None:
    """What HF_HUB_CACHE and HF_HUB_OFFLINE=1 set when a process starts (huggingface_hub reads them
    at import, which happened before this test)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def test_hub_ids_are_told_from_names_and_paths(tmp_path):
    assert is_hub_id(HUB_ID) and is_hub_id("Qwen/Qwen2.5-7B-Instruct")
    assert not is_hub_id("smollm2-135m-instruct")  # registered
    assert not is_hub_id(str(tmp_path))  # exists
    assert not is_hub_id("not a/hub id") and not is_hub_id("plain")


def test_a_hub_model_is_downloaded_once_into_the_store_and_loaded_from_any_node(s3_store, hub_cache):
    import pyarrow.parquet  # noqa: F401 (Manifest's imports, before the clock matters)

    from kale_ray.engines.loading import load_tokenizer

    cfg = KaleConfig(workdir=f"{s3_store.uri}/hub-model", model={"name_or_path": HUB_ID})
    # What resolve_model_in_task runs in a Ray task (here, in this process: the hub cache is patched here).
    path = download_hub_model(HUB_ID, cfg.models_dir)
    assert path == cfg.models_dir / "HuggingFaceTB--SmolLM2-135M-Instruct"
    prefix = "session/hub-model/models/HuggingFaceTB--SmolLM2-135M-Instruct/"
    keys = s3_store.keys(prefix)
    assert {prefix + n for n in ("config.json", "model.safetensors", "tokenizer.json", "manifest.json")} <= set(keys)
    assert not any(Path(k).is_symlink() for k in path.iterdir())  # files, not the cache's links

    # Once: a second resolution neither downloads nor needs the hub.
    shutil.rmtree(hub_cache.parent.parent)
    assert resolve_model_in_task(HUB_ID, None, cfg.models_dir) == str(path)
    # Another node: an empty mirror, no hub; the engines fetch the model from the store.
    shutil.rmtree(cfg.workdir_path)
    tokenizer = load_tokenizer(str(path))
    assert tokenizer("Paris")["input_ids"]
    assert storage.remote_location(path) == f"s3://kale/{prefix.rstrip('/')}"


def test_a_model_the_hub_cannot_give_is_a_clear_error(tmp_path, monkeypatch):
    _hub_cache(monkeypatch, tmp_path / "empty-hub")
    with pytest.raises(ModelError, match="download from the Hugging Face hub failed"):
        download_hub_model("nobody/no-such-model", tmp_path / "models")
    assert not (tmp_path / "models" / "nobody--no-such-model" / "manifest.json").exists()
