"""The KG stage: a source -> the KG artifact (`store.write_kg`), skipped when complete for the config."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from kale_ray import storage
from kale_ray.artifacts import Manifest, file_sha256, is_complete
from kale_ray.config import ConfigError

DEFAULT_WORDNET = Path("/usr/share/wordnet")
# Sources built by the streaming build (kale_ray/kg/build.py), on Ray when a cluster is up.
STREAMED = ("wikidata", "triples")
# A triples input above this size is parsed on a Ray cluster; smaller ones batch by batch in-process.
RAY_TRIPLES_BYTES = 256 * 1024**2


def default_input(cfg) -> Path:  # noqa: ANN001 (KaleConfig)
    if cfg.kg.input is not None:
        return Path(cfg.kg.input)
    if cfg.kg.source == "wordnet":
        return DEFAULT_WORDNET
    if cfg.kg.source == "metaqa":
        return Path(cfg.data_root) / "metaqa" / "kb.txt"
    raise ConfigError(f"kg.input: a path is required for source {cfg.kg.source!r}")


def input_fingerprint(path: Path) -> dict[str, Any]:
    """Name, size and hash of the input files (the hash of a directory covers its files)."""
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        digest.update(file_sha256(f).encode())
    return {"path": str(path), "files": len(files), "bytes": sum(f.stat().st_size for f in files),
            "sha256": digest.hexdigest()}


def build_kg(source: str, input_path: Path, out: Path, *, entity_labels: Path | None = None,
             relation_labels: Path | None = None, force: bool = False) -> Path:
    """Read `input_path` as `source` and write the KG artifact to `out`; skip when already built."""
    from kale_ray.kg.sources import read_source
    from kale_ray.kg.store import write_kg

    input_path = Path(input_path)
    if not input_path.exists():
        raise ConfigError(f"kg input does not exist: {input_path}")
    from kale_ray.kg.store import LAYOUT

    # The layout is part of the hash: an artifact of an older layout is rebuilt, not half-read.
    inputs = {"source": source, "input": input_fingerprint(input_path), "layout": LAYOUT}
    for name, extra in (("entity_labels", entity_labels), ("relation_labels", relation_labels)):
        if extra is not None:
            if not Path(extra).is_file():
                raise ConfigError(f"kg {name} file does not exist: {extra}")
            inputs[name] = input_fingerprint(Path(extra))
    config_hash = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    if not force and is_complete(out, config_hash, fetch=False):  # the actors map it where they run
        print(f"kg: {out} is complete for this source, skipping", flush=True)
        return Path(out)
    t0 = time.monotonic()
    if source in STREAMED:
        args = (source, input_path, Path(out), config_hash, inputs, entity_labels, relation_labels)
        import ray

        if ray.is_initialized() and storage.remote_location(out) is not None:
            # The build's tasks share scratch files and fill slices of the arrays in place: with an
            # object-store workdir they all run on one node (its mirror), which publishes the artifact.
            ray.get(ray.remote(num_cpus=1)(_build_streamed_on_one_node).remote(*args))
        else:
            _build_streamed(*args)
        counts = Manifest.read(Path(out)).counts
        print(f"kg: {source} -> {counts['entities']} entities, {counts['relations']} relations, "
              f"{counts['triples']} triples ({counts['skipped']} lines skipped) in {out} "
              f"[{time.monotonic() - t0:.1f}s]", flush=True)
        return Path(out)
    builder = read_source(source, input_path, entity_labels=entity_labels, relation_labels=relation_labels)
    read_s = time.monotonic() - t0
    tables = builder.tables()
    write_kg(tables, Path(out), config_hash=config_hash, source=source, inputs=inputs,
             skipped=builder.log.as_dict(), extra={"read_seconds": round(read_s, 3), "source_info": builder.info})
    print(f"kg: {source} -> {len(tables.keys)} entities, {len(tables.relation_keys)} relations, "
          f"{len(tables.heads)} triples ({builder.log.skipped} lines skipped) in {out} "
          f"[{time.monotonic() - t0:.1f}s]", flush=True)
    return Path(out)


def _build_streamed(source: str, input_path: Path, out: Path, config_hash: str, inputs: dict[str, Any],
                    entity_labels: Path | None, relation_labels: Path | None) -> None:
    if source == "wikidata":
        from kale_ray.kg.sources.wikidata import build_wikidata

        build_wikidata(input_path, out, config_hash=config_hash, inputs=inputs)
    else:
        from kale_ray.kg.sources.triples import build_triples

        build_triples(input_path, out, config_hash=config_hash, inputs=inputs,
                      entity_labels=entity_labels, relation_labels=relation_labels)


def _build_streamed_on_one_node(*args: Any) -> None:
    from kale_ray.ray_utils import pin_to_this_node

    pin_to_this_node()
    _build_streamed(*args)


def needs_ray(cfg) -> bool:  # noqa: ANN001 (KaleConfig)
    """The wikidata source and triples inputs over RAY_TRIPLES_BYTES are parsed on a Ray cluster."""
    where = default_input(cfg)
    return cfg.kg.source == "wikidata" or (cfg.kg.source == "triples" and where.is_file()
                                           and where.stat().st_size > RAY_TRIPLES_BYTES)


def run_kg_stage(cfg) -> Path:  # noqa: ANN001 (KaleConfig)
    """Build `cfg.stage_dir("kg")` from `cfg.kg`; Ray is started when `needs_ray`."""
    if needs_ray(cfg):
        from kale_ray.ray_utils import init_ray

        init_ray(cfg.ray)
    return build_kg(cfg.kg.source, default_input(cfg), cfg.stage_dir("kg"),
                    entity_labels=cfg.kg.entity_labels, relation_labels=cfg.kg.relation_labels)
