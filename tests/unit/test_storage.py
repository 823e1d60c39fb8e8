"""An object-store workdir against a real S3-compatible server on 127.0.0.1 (moto's server mode): the
artifact layer publishes every completed file, manifests last, and a node whose mirror is empty
resumes from what the store holds."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pytest

from kale_ray import storage
from kale_ray.artifacts import (
    Manifest,
    atomic_write_parquet,
    is_complete,
    part_path,
    pending_rows,
    read_parts,
)
from kale_ray.config import KaleConfig


@pytest.fixture
def workdir(s3_store, request):
    """A fresh prefix of the session's bucket and its mirror on this 'node'."""
    uri = f"{s3_store.uri}/{request.node.name}"
    return uri, storage.local_root(uri)


def _rows(ids: list[str]) -> pa.Table:
    return pa.table({"id": ids, "value": [len(i) for i in ids]})


def test_a_config_names_a_store_and_stages_get_a_local_mirror(s3_store):
    cfg = KaleConfig(workdir="s3://kale/session/cfg", run_name="r")
    assert cfg.stage_dir("data") == s3_store.mirror_root / "s3" / "kale" / "session" / "cfg" / "r" / "data"
    assert storage.remote_location(cfg.stage_dir("data")) == "s3://kale/session/cfg/r/data"
    local = KaleConfig(workdir="artifacts")
    assert local.stage_dir("data").as_posix() == "artifacts/demo/data"
    assert storage.remote_location(local.stage_dir("data")) is None
    assert storage.publish(local.stage_dir("data")) == 0  # a local workdir never reaches a store


def test_completed_files_are_published_and_a_fresh_mirror_resumes_from_the_store(s3_store, workdir):
    uri, root = workdir
    out = root / "stage"
    prefix = uri.removeprefix("s3://kale/") + "/stage/"
    rows = _rows([f"r{i}" for i in range(6)])
    todo = pending_rows(out, "stage", "h1", rows)
    assert todo is not None and todo.todo.num_rows == 6
    atomic_write_parquet(part_path(out, 0), rows.slice(0, 4))
    # The incomplete marker and the finished part are in the store already: a crash here loses nothing.
    assert s3_store.keys(prefix) == [prefix + "manifest.json", prefix + "part-00000.parquet"]

    shutil.rmtree(root)  # another node, or the same one after its disk was lost
    resumed = pending_rows(out, "stage", "h1", rows)
    assert resumed is not None and resumed.done == 4 and resumed.next_part == 1
    assert resumed.todo.column("id").to_pylist() == ["r4", "r5"]
    atomic_write_parquet(part_path(out, 1), resumed.todo)
    Manifest(stage="stage", config_hash="h1", counts={"rows": 6}).write(out)

    shutil.rmtree(root)
    assert is_complete(out, "h1")  # fetched, then checked against the manifest's hashes
    assert read_parts(out).column("id").to_pylist() == rows.column("id").to_pylist()
    assert not is_complete(out, "another config")


def test_a_corrupted_object_makes_the_artifact_incomplete(s3_store, workdir):
    uri, root = workdir
    out = root / "stage"
    atomic_write_parquet(out / "data.parquet", _rows(["a", "b"]))
    Manifest(stage="stage", config_hash="h").write(out)
    key = uri.removeprefix("s3://kale/") + "/stage/data.parquet"
    body = s3_store.client().get_object(Bucket="kale", Key=key)["Body"].read()
    s3_store.client().put_object(Bucket="kale", Key=key, Body=body[::-1])  # same size, other bytes
    shutil.rmtree(root)
    assert not is_complete(out, "h")


def test_another_config_clears_the_store_too(s3_store, workdir):
    uri, root = workdir
    out = root / "stage"
    prefix = uri.removeprefix("s3://kale/") + "/stage/"
    pending_rows(out, "stage", "old", _rows(["a"]))
    atomic_write_parquet(part_path(out, 0), _rows(["a"]))
    shutil.rmtree(root)
    fresh = pending_rows(out, "stage", "new", _rows(["a", "b"]))
    assert fresh is not None and fresh.done == 0 and fresh.todo.num_rows == 2
    assert s3_store.keys(prefix) == [prefix + "manifest.json"]  # the old config's part is gone


def test_publish_skips_what_the_store_holds_and_fetch_what_the_mirror_holds(s3_store, workdir):
    uri, root = workdir
    out = root / "model"
    out.mkdir(parents=True)
    (out / "weights.bin").write_bytes(b"x" * 1000)
    (out / "sub").mkdir()
    (out / "sub" / "config.json").write_text("{}")
    (out / ".weights.bin.tmp").write_bytes(b"partial")
    assert storage.publish(out) == 2  # hidden temporaries stay local
    assert storage.publish(out) == 0
    prefix = uri.removeprefix("s3://kale/") + "/model/"
    assert s3_store.keys(prefix) == [prefix + "sub/config.json", prefix + "weights.bin"]
    shutil.rmtree(root)
    assert storage.fetch(out) == 2
    assert (out / "weights.bin").read_bytes() == b"x" * 1000
    assert storage.fetch(out) == 0
    storage.remove(out)
    assert s3_store.keys(prefix) == [] and not out.exists()


def test_a_driver_checks_weights_in_the_store_without_downloading_them(s3_store, workdir):
    uri, root = workdir
    out = root / "train"
    (out / "final").mkdir(parents=True)
    (out / "final" / "model.safetensors").write_bytes(b"w" * 4096)
    Manifest(stage="train", config_hash="k").write(out)
    shutil.rmtree(root)
    assert is_complete(out, "k", fetch=False)
    assert not (out / "final").exists(), "the weights stay in the store"
    key = uri.removeprefix("s3://kale/") + "/train/final/model.safetensors"
    s3_store.client().put_object(Bucket="kale", Key=key, Body=b"w" * 100)  # cut short
    assert not is_complete(out, "k", fetch=False)
    s3_store.client().delete_object(Bucket="kale", Key=key)
    assert not is_complete(out, "k", fetch=False)
