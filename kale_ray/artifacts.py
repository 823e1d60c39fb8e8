"""Stage artifacts: a directory of Parquet parts plus `manifest.json`, written atomically.

Every stage writes its rows as numbered part files, each renamed into place only when complete, and
finishes by writing a manifest (config hash, inputs, versions, counts, file hashes). A re-run reads
which parts exist and does only the rest, so a crash never duplicates or loses a row.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from kale_ray import storage

MANIFEST = storage.MANIFEST
NODE_COLUMN = "node"  # which node wrote a row (kale_ray.ray_utils.with_node)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    storage.publish(path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_parquet(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    storage.publish(path)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def versions(*packages: str) -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("kale-ray", "ray", "torch", "transformers", "peft", "deepspeed", "networkit", "pyarrow",
                 *packages):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


@dataclass
class Manifest:
    """What a stage made, from what, and whether it finished."""

    stage: str
    config_hash: str
    config: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=versions)
    complete: bool = True
    created_at: float = field(default_factory=time.time)

    def write(self, directory: Path, hash_files: Iterable[Path] | None = None,
              described: Described | None = None) -> Path:
        """Hash the artifact's files (all but hidden and the manifest, unless named; plus those another
        process `described`) and write last: with an object-store workdir the files reach the store
        before the manifest that names them."""
        directory = Path(directory)
        if hash_files is None:
            hash_files = sorted(p for p in directory.rglob("*")
                                if p.is_file() and p.name != MANIFEST and not p.name.startswith("."))
        here = describe_files(directory, hash_files)
        self.files = {**(described.files if described else {}), **here.files}
        self.sizes = {**(described.sizes if described else {}), **here.sizes}
        storage.publish(directory, match=here.files.__contains__)
        atomic_write_json(directory / MANIFEST, self.__dict__)
        return directory / MANIFEST

    @classmethod
    def read(cls, directory: Path) -> Manifest | None:
        path = Path(directory) / MANIFEST
        storage.fetch(path)
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Described:
    """Files of an artifact, relative to its directory: sha256 and size of each."""

    files: dict[str, str]
    sizes: dict[str, int]


def describe_files(directory: Path, paths: Iterable[Path]) -> Described:
    """What a manifest records of `paths`; a process that wrote files on another node (and published
    them) hands this to the one that writes the manifest."""
    directory = Path(directory)
    paths = list(paths)
    return Described({p.relative_to(directory).as_posix(): file_sha256(p) for p in paths},
                     {p.relative_to(directory).as_posix(): p.stat().st_size for p in paths})


def is_complete(directory: Path, config_hash: str, fetch: bool = True) -> bool:
    """True when the artifact finished for this exact config and its files still match their hashes.
    With an object-store workdir the files are fetched first, unless `fetch` is False: then the store
    must hold every file at its recorded size (what a driver checks of model weights it never reads)."""
    manifest = Manifest.read(directory)
    if manifest is None or not manifest.complete or manifest.config_hash != config_hash:
        return False
    if not fetch and storage.remote_location(directory) is not None:
        return storage.holds(directory, {rel: manifest.sizes.get(rel) for rel in manifest.files})
    storage.fetch(directory, match=manifest.files.__contains__)
    for rel, digest in manifest.files.items():
        path = Path(directory) / rel
        if not path.is_file() or file_sha256(path) != digest:
            return False
    return True


def part_path(directory: Path, index: int, prefix: str = "part") -> Path:
    return Path(directory) / f"{prefix}-{index:05d}.parquet"


def existing_parts(directory: Path, prefix: str = "part") -> dict[int, Path]:
    directory = Path(directory)
    storage.fetch(directory, match=lambda rel: "/" not in rel and rel.startswith(f"{prefix}-"))
    if not directory.is_dir():
        return {}
    return {int(p.stem.split("-")[-1]): p for p in sorted(directory.glob(f"{prefix}-*.parquet"))}


@dataclass
class Pending:
    """What a resumable part-file stage still has to do: `todo` rows, written from part `next_part` on."""

    todo: pa.Table
    done: int
    next_part: int


def pending_rows(out: Path, stage: str, config_hash: str, rows: pa.Table) -> Pending | None:
    """None when `out` is complete for `config_hash`; else the rows whose ids no part file holds yet.
    A directory left by another config is cleared first, and the manifest marks the stage incomplete
    until it finishes, so a crash at any point resumes without duplicates or losses."""
    import pyarrow.compute as pc

    out = Path(out)
    if is_complete(out, config_hash):
        print(f"{stage}: {out} is complete for this config, skipping", flush=True)
        return None
    previous = Manifest.read(out)
    if previous is not None and previous.config_hash != config_hash:
        print(f"{stage}: {out} holds parts of another config; starting over", flush=True)
        storage.remove(out)
    out.mkdir(parents=True, exist_ok=True)
    Manifest(stage=stage, config_hash=config_hash, complete=False).write(out, hash_files=[])
    parts = existing_parts(out)
    done: set[str] = set()
    for p in parts.values():
        done.update(pq.read_table(p, columns=["id"]).column("id").to_pylist())
    todo = rows.filter(pc.invert(pc.is_in(rows.column("id"), pa.array(sorted(done), pa.string()))))
    print(f"{stage}: {rows.num_rows} rows, {len(done)} already done, {todo.num_rows} to run", flush=True)
    return Pending(todo, len(done), max(parts, default=-1) + 1)


def recorded_nodes(parts: Iterable[Path], column: str = NODE_COLUMN) -> list[str]:
    """The nodes that wrote an artifact's rows (its parts' `node` column; parts without one add none)."""
    nodes: set[str] = set()
    for part in parts:
        if column in pq.read_schema(part).names:
            nodes.update(v for v in pq.read_table(part, columns=[column]).column(column).to_pylist() if v)
    return sorted(nodes)


def read_parts(directory: Path, prefix: str = "part") -> pa.Table:
    parts = existing_parts(directory, prefix)
    if not parts:
        raise FileNotFoundError(f"no {prefix}-*.parquet files in {directory}")
    return pa.concat_tables([pq.read_table(p) for _, p in sorted(parts.items())], promote_options="default")


def write_batches(out: Path, batches: Any, next_index: int, progress: Any) -> int:
    """Each non-empty Arrow batch of a streaming stage as the next part file, atomically, counted on
    `progress`; returns the next free part index (what a resumed run starts from)."""
    for table in batches:
        if table.num_rows == 0:
            continue
        atomic_write_parquet(part_path(out, next_index), table)
        next_index += 1
        progress.update(table.num_rows)
    return next_index
