"""The dump-scale KG on a real local Ray cluster: the streaming Wikidata build on a generated dump (several
shards and buckets) against a single-process reference, and two actors sharing one memory-mapped KG."""

from __future__ import annotations

import bz2
import gzip
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from kale_ray.kg.build import BuildLimits
from kale_ray.kg.dumpgen import write_dump
from kale_ray.kg.sources.base import KGBuilder
from kale_ray.kg.sources.wikidata import build_wikidata, dump_files, parse_entity_line
from kale_ray.kg.stage import build_kg
from kale_ray.kg.store import load_kg

pytestmark = pytest.mark.ray


def _lines(dump: Path) -> Iterator[str]:
    for path in dump_files(dump):
        with (bz2.open if path.suffix == ".bz2" else gzip.open)(path, "rt", encoding="utf-8") as fh:
            yield from fh


def reference(dump: Path) -> tuple[Counter, dict[str, str], int]:
    """The dump read in one process with the per-line parser: triples, labels, skipped lines."""
    builder = KGBuilder()
    edges = []
    skipped = 0
    for line in _lines(dump):
        row = parse_entity_line(line)
        if row["kind"] == "error":
            skipped += 1
        elif row["kind"] == "item":
            builder.entity(row["key"], label=row["label"], aliases=row["aliases"])
            edges.extend((row["key"], r, t) for r, t in zip(row["rels"], row["tails"], strict=True))
    for head, rel, tail in edges:
        builder.triple(head, rel, tail)
    labels = dict(zip(builder.entity_ids, builder.labels, strict=True))
    return Counter(edges), labels, skipped


# One file; or a directory of its parts, read in name order as one dump (the generator writes 10,000
# items a chunk, so 25,000 items make 3 parts).
@pytest.mark.parametrize("name, parts, items, per_item, shard_lines, bucket_rows",
                         [("latest-all.json.bz2", 1, 800, 6, 200, 2_000), ("parts", 3, 25_000, 1.5, 5_000, 20_000)])
def test_streaming_build_of_a_generated_dump_matches_a_single_process_read(  # noqa: PLR0913
        ray_local, tmp_path: Path, name: str, parts: int, items: int, per_item: float, shard_lines: int,  # noqa: ANN001
        bucket_rows: int) -> None:
    dump = tmp_path / name
    wrote = write_dump(dump, items=items, statements_per_item=per_item, properties=30, seed=1, malformed=3,
                       parts=parts)
    assert wrote["files"] == parts and len(dump_files(dump)) == parts
    out = build_wikidata(dump, tmp_path / "kg", config_hash="t", inputs={},
                         limits=BuildLimits(shard_lines=shard_lines, bucket_rows=bucket_rows))
    kg = load_kg(out)
    build = kg.manifest["extra"]["build"]
    assert build["shards"] >= 4 and build["key_buckets"] >= 2 and build["csr_buckets"] >= 2
    edges, labels, skipped = reference(dump)
    assert kg.num_triples == wrote["statements"] == sum(edges.values())
    assert Counter(kg.triple_keys(i) for i in range(kg.num_triples)) == edges
    assert kg.num_entities == len(labels) and all(kg.labels[kg.id_of(k)] == v for k, v in labels.items())
    assert list(kg.keys) == sorted(labels)
    assert kg.manifest["counts"]["skipped"] == skipped == 3
    assert dict(zip(kg.relation_keys, kg.relation_labels, strict=True))["P7"] == "relation 7"


def _smaps_of(prefix: str) -> dict[str, int]:
    """kB of this process's mappings of files under `prefix`: resident, shared, private."""
    totals = {"rss": 0, "shared": 0, "private": 0}
    inside = False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            head = line.split()
            if not head:
                continue
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                inside = len(head) >= 6 and head[5].startswith(prefix)
            elif inside and head[0] == "Rss:":
                totals["rss"] += int(head[1])
            elif inside and head[0] in ("Shared_Clean:", "Shared_Dirty:"):
                totals["shared"] += int(head[1])
            elif inside and head[0] in ("Private_Clean:", "Private_Dirty:"):
                totals["private"] += int(head[1])
    return totals


def _anonymous_kb() -> int:
    with open("/proc/self/smaps_rollup") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("Anonymous:"))


class KGHolder:
    """A stand-in for a paths actor: maps the KG, builds the linker and searcher, touches every page."""

    def load(self, kg_dir: str) -> dict[str, int]:
        import numpy as np

        from kale_ray.kg.link import Linker
        from kale_ray.kg.paths import PathSearcher, SearchLimits
        from kale_ray.kg.store import load_kg

        before = _anonymous_kb()
        kg = load_kg(Path(kg_dir))
        self.kg, self.linker = kg, Linker(kg)
        self.searcher = PathSearcher(kg.adjacency, SearchLimits(max_hops=3))
        adj = kg.adjacency
        self.touched = sum(int(np.asarray(a).view(np.uint8)[::4096].sum())
                           for a in (adj.indptr, adj.nbr, adj.edge, adj.back, kg.heads, kg.relations, kg.tails,
                                     kg.alias_index.ids, kg.alias_index.names.data, kg.keys.data, kg.labels.data))
        self.linker.link_question("What colour is fresh snow?")
        return {"anonymous_kb": _anonymous_kb() - before, "scratch_kb": 20 * kg.num_entities // 1024}

    def mapped(self, kg_dir: str) -> dict[str, int]:
        return _smaps_of(str(Path(kg_dir) / "arrays"))


@pytest.mark.slow  # two actor processes on WordNet: ~17 s on an idle 2-core machine
def test_two_actors_share_one_mapped_kg(ray_local, tmp_path: Path) -> None:  # noqa: ANN001
    import ray

    tiny = tmp_path / "kb.txt"   # loaded first, so imports and compiled kernels are not counted
    tiny.write_text("snow|has_colour|white\nwhite|is_a|colour\n")
    tiny_dir = str(build_kg("metaqa", tiny, tmp_path / "tiny").resolve())

    cache = Path(tempfile.gettempdir()) / f"kale-ray-tests-{os.getuid()}" / "kg-layout2" / "wordnet"
    kg_dir = str(build_kg("wordnet", Path("/usr/share/wordnet"), cache).resolve())
    array_kb = sum(p.stat().st_size for p in (Path(kg_dir) / "arrays").glob("*.npy")) // 1024
    holder = ray.remote(num_cpus=0)(KGHolder)
    actors = [holder.remote() for _ in range(2)]
    ray.get([a.load.remote(tiny_dir) for a in actors])
    loads = ray.get([a.load.remote(kg_dir) for a in actors])
    maps = ray.get([a.mapped.remote(kg_dir) for a in actors])
    for load, mapped in zip(loads, maps, strict=True):
        # The graph is not copied into the actor: its own memory grows by the search buffers (20 B per
        # node) and small change, far below the graph's bytes ...
        assert load["anonymous_kb"] < load["scratch_kb"] + 0.1 * array_kb, (load, array_kb)
        # ... and the pages it reads are the other actor's pages too.
        assert mapped["rss"] > 0.5 * array_kb and mapped["shared"] >= 0.95 * mapped["rss"], (mapped, array_kb)
    for a in actors:
        ray.kill(a)


def test_triples_file_parsed_on_ray_data_keeps_file_order(ray_local, tmp_path: Path) -> None:  # noqa: ANN001
    lines = ["head\trelation\ttail"] + [f"e{i % 97}\tr{i % 5}\te{(i * 7) % 101}" for i in range(1_200)] + ["bad line"]
    (tmp_path / "t.tsv").write_text("\n".join(lines) + "\n")
    (tmp_path / "ents.tsv").write_text("e1\tEntity One\tfirst|uno\n")
    out = build_kg("triples", tmp_path / "t.tsv", tmp_path / "kg", entity_labels=tmp_path / "ents.tsv")
    kg = load_kg(out)
    assert [kg.triple_keys(i) for i in range(kg.num_triples)] == [tuple(x.split("\t")) for x in lines[1:-1]]
    assert kg.labels[kg.id_of("e1")] == "Entity One" and kg.aliases[kg.id_of("e1")].as_py() == ["first", "uno"]
    assert kg.manifest["counts"]["skipped"] == 1 and list(kg.keys) == sorted(kg.keys)
