"""Where a run's artifacts live: a local or shared POSIX directory, or an object store (`s3://`,
`gs://`) reached through pyarrow.fs.

Stages read and write plain local paths (memory-mapped KG arrays, transformers checkpoints and
Parquet parts all want files). With an object-store `workdir`, those paths are a node-local mirror
of the store (`KALE_MIRROR_ROOT`, default /tmp/kale-ray-mirror, the same absolute path on every
node), and the store is the source of truth: every completed file is published as soon as it is
renamed into place (parts first, `manifest.json` last, so a store never shows a manifest before its
files), and every artifact is fetched before it is read or resumed. A node that never saw a run, or
a re-submitted job on a new head node, resumes from what the store holds.

Processes learn the mirrors from `KALE_STORE_MIRRORS` (set when a config names a URI workdir and
handed to Ray workers with the other environment defaults), so a task on any node publishes into
the same store. Credentials and the endpoint come from the standard AWS/GCS variables
(`AWS_ENDPOINT_URL` for an S3-compatible server), never from the config.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

MIRRORS_ENV = "KALE_STORE_MIRRORS"
ROOT_ENV = "KALE_MIRROR_ROOT"
DEFAULT_ROOT = "/tmp/kale-ray-mirror"
MANIFEST = "manifest.json"


def is_uri(location: str | Path) -> bool:
    """An object-store location (`s3://bucket/prefix`); a `file://` URI is a local path."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def local_root(workdir: str | Path) -> Path:
    """The local directory stages use for `workdir`: itself, or this node's mirror of the store
    (registered, so this process and the Ray workers it starts publish into the store)."""
    text = str(workdir)
    if text.startswith("file://"):
        return Path(text.removeprefix("file://"))
    if not is_uri(text):
        return Path(text)
    scheme, rest = text.split("://", 1)
    root = Path(os.environ.get(ROOT_ENV, DEFAULT_ROOT)) / scheme / rest.strip("/")
    mirrors = _mirrors()
    if mirrors.get(str(root)) != text.rstrip("/"):
        os.environ[MIRRORS_ENV] = json.dumps({**mirrors, str(root): text.rstrip("/")}, sort_keys=True)
    return root


def remote_location(path: str | Path) -> str | None:
    """The store URI of a local path inside a mirror, else None (a plain local or shared path)."""
    resolved = os.path.abspath(path)
    for root, uri in _mirrors().items():
        if resolved == root or resolved.startswith(root + os.sep):
            rel = os.path.relpath(resolved, root)
            return uri if rel == "." else f"{uri}/{rel}"
    return None


def identity(path: str | Path) -> str:
    """What a path stands for in a config key: its store URI when mirrored (the same on every node and
    after a mirror is lost), else the absolute local path."""
    return remote_location(path) or str(Path(path).resolve())


def filesystem(uri: str) -> tuple[Any, str]:
    """pyarrow's filesystem and in-store path of a URI (one filesystem object per store and process)."""
    scheme, rest = uri.split("://", 1)
    bucket = rest.split("/", 1)[0]
    return _filesystem(f"{scheme}://{bucket}"), rest.rstrip("/")


def publish(path: str | Path, match: Callable[[str], bool] | None = None) -> int:
    """Upload a file, or a directory's files (those whose relative path `match`es), from the mirror
    to the store; `manifest.json` files last. Files the store already holds at the same size are
    skipped (parts are immutable once renamed into place); hidden and temporary files stay local.
    Returns the files uploaded."""
    uri = remote_location(path)
    if uri is None:
        return 0
    fs, base = filesystem(uri)
    local = Path(path)
    if local.is_file():
        _upload(fs, local, base)
        return 1
    if not local.is_dir():
        return 0
    remote = _remote_sizes(fs, base)
    files = sorted((p for p in local.rglob("*") if p.is_file() and not _hidden(p.relative_to(local))),
                   key=lambda p: (p.name == MANIFEST, len(p.parts), str(p)))
    sent = 0
    for file in files:
        rel = file.relative_to(local).as_posix()
        if match is not None and not match(rel):
            continue
        if file.name == MANIFEST or remote.get(rel) != file.stat().st_size:
            _upload(fs, file, f"{base}/{rel}")
            sent += 1
    return sent


def fetch(path: str | Path, match: Callable[[str], bool] | None = None) -> int:
    """Download what the store holds under a mirrored path (a file, or a directory's files whose
    relative path `match`es) and the mirror lacks or holds at another size; manifests always.
    Returns the files downloaded."""
    uri = remote_location(path)
    if uri is None:
        return 0
    fs, base = filesystem(uri)
    import pyarrow.fs as pafs

    info = fs.get_file_info(base)
    local = Path(path)
    if info.type == pafs.FileType.File:
        if local.name == MANIFEST or not local.is_file() or local.stat().st_size != info.size:
            _download(fs, base, local)
            return 1
        return 0
    got = 0
    for rel, size in _remote_sizes(fs, base).items():
        target = local / rel
        if _hidden(Path(rel)) or (match is not None and not match(rel)):
            continue
        if target.name == MANIFEST or not target.is_file() or target.stat().st_size != size:
            _download(fs, f"{base}/{rel}", target)
            got += 1
    return got


def holds(path: str | Path, sizes: dict[str, int | None]) -> bool:
    """Whether the store holds each file (relative to the mirrored directory `path`) at its size
    (None: any size)."""
    uri = remote_location(path)
    if uri is None:
        raise ValueError(f"{path} is not in an object-store workdir")
    fs, base = filesystem(uri)
    remote = _remote_sizes(fs, base)
    return all(rel in remote and (size is None or remote[rel] == size) for rel, size in sizes.items())


def remove(path: str | Path) -> None:
    """Delete a file or directory from the mirror and from the store (an artifact started over)."""
    local = Path(path)
    if local.is_dir():
        shutil.rmtree(local, ignore_errors=True)
    else:
        local.unlink(missing_ok=True)
    uri = remote_location(path)
    if uri is not None:
        fs, base = filesystem(uri)
        import pyarrow.fs as pafs

        kind = fs.get_file_info(base).type
        if kind == pafs.FileType.Directory:
            fs.delete_dir(base)
        elif kind == pafs.FileType.File:
            fs.delete_file(base)


def ray_storage(path: str | Path) -> tuple[str, Any]:
    """Ray Train's `storage_path` and `storage_filesystem` for a run directory: the store itself
    when mirrored (so checkpoints written on any node land there), else the absolute local path."""
    uri = remote_location(path)
    if uri is None:
        return str(Path(path).resolve()), None
    fs, base = filesystem(uri)
    return base, fs


def _mirrors() -> dict[str, str]:
    raw = os.environ.get(MIRRORS_ENV, "")
    return json.loads(raw) if raw else {}


@cache
def _filesystem(store: str) -> Any:
    import pyarrow.fs as pafs

    return pafs.FileSystem.from_uri(store)[0]


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _remote_sizes(fs: Any, base: str) -> dict[str, int]:
    import pyarrow.fs as pafs

    selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
    return {info.path[len(base) + 1:]: int(info.size) for info in fs.get_file_info(selector)
            if info.type == pafs.FileType.File}


def _upload(fs: Any, local: Path, key: str) -> None:
    """One object, written whole: a store shows either the old object or the new one."""
    with open(local, "rb") as src, fs.open_output_stream(key) as dst:
        shutil.copyfileobj(src, dst, 1 << 22)


def _download(fs: Any, key: str, local: Path) -> None:
    local.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=local.parent, prefix=f".{local.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as dst, fs.open_input_stream(key) as src:
            shutil.copyfileobj(src, dst, 1 << 22)
        os.chmod(tmp, 0o644)
        os.replace(tmp, local)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
