"""The dump-scale KG: Arrow id assignment, CSR from shards, memory-mapped loading, the on-disk alias
index against the previous in-memory linker, and bad dump lines. The build's tasks run in-process here
(no Ray cluster); tests/ray/test_kg_scale.py runs them on Ray."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from kale_ray.kg.build import EDGE_SHARD, ENTITY_SHARD, BuildLimits, BuildReport, assemble, write_shard
from kale_ray.kg.link import STOP_WORDS, Linker, normalize, singular
from kale_ray.kg.paths import PathSearcher, SearchLimits
from kale_ray.kg.sources.base import kg_from_triples
from kale_ray.kg.sources.wikidata import parse_lines
from kale_ray.kg.stage import build_kg
from kale_ray.kg.store import Adjacency, load_kg

CACHE = Path(tempfile.gettempdir()) / f"kale-ray-tests-{os.getuid()}" / "kg-layout2"


def _shard(directory: Path, name: str, entities: list[tuple], edges: list[tuple]):  # noqa: ANN202
    ents = pa.table([list(c) for c in zip(*entities, strict=True)] if entities else [[], [], [], []],
                    schema=ENTITY_SHARD)
    eds = pa.table([list(c) for c in zip(*edges, strict=True)] if edges else [[], [], []], schema=EDGE_SHARD)
    return write_shard(directory, name, ents, eds, properties={}, counts={})


def _assemble(tmp: Path, shards: list, bucket_rows: int):  # noqa: ANN001, ANN202
    out = tmp / "kg"
    assemble(shards, out, config_hash="test", source="test", inputs={}, limits=BuildLimits(bucket_rows=bucket_rows),
             report=BuildReport())
    return load_kg(out)


def test_ids_are_ranks_in_the_sorted_key_table(tmp_path: Path) -> None:
    parsed = tmp_path / "kg" / ".build" / "parsed"
    shards = [
        _shard(parsed, "s0", [("Q9", "nine", ["IX"], None), ("Q10", None, [], "ten"), ("Q2", "two", [], None)],
               [("Q9", "P1", "Q2"), ("Q9", "P1", "Q77"), ("Q10", "P2", "Q9")]),
        _shard(parsed, "s1", [("Q2", "second two", [], None), ("Q5", "five", [], None)],
               [("Q5", "P1", "Q77"), ("Q5", "P3", "Q100")]),
    ]
    kg = _assemble(tmp_path, shards, bucket_rows=2)   # several key buckets, each sorted on its own
    assert list(kg.keys) == sorted(["Q9", "Q10", "Q2", "Q5", "Q77", "Q100"])
    assert all(kg.id_of(k) == i for i, k in enumerate(kg.keys)) and kg.id_of("Q3") is None
    assert kg.labels[kg.id_of("Q2")] == "two"          # the first row of a key wins
    assert kg.labels[kg.id_of("Q10")] == "Q10" and kg.labels[kg.id_of("Q77")] == "Q77"  # no label: the key
    assert kg.aliases[kg.id_of("Q9")].as_py() == ["IX"]
    assert sorted(kg.triple_keys(i) for i in range(kg.num_triples)) == sorted(
        [("Q9", "P1", "Q2"), ("Q9", "P1", "Q77"), ("Q10", "P2", "Q9"), ("Q5", "P1", "Q77"), ("Q5", "P3", "Q100")])
    assert kg.manifest["extra"]["source_info"]["tails_without_entity"] == 3
    assert kg.manifest["extra"]["build"]["key_buckets"] > 1


def test_csr_from_shards_equals_the_in_memory_build(tmp_path: Path) -> None:
    rng = random.Random(7)
    keys = [f"n{i}" for i in range(300)]
    triples = [(rng.choice(keys[:40]) if rng.random() < 0.3 else rng.choice(keys), f"r{rng.randrange(5)}",
                rng.choice(keys)) for _ in range(2_000)]
    triples += triples[:50] + [("n1", "r0", "n1"), ("n2", "r1", "n3"), ("n3", "r1", "n2")]  # parallel, loop, both ways
    parsed = tmp_path / "kg" / ".build" / "parsed"
    heads = sorted({h for h, _, _ in triples})
    shards, at = [], 0
    for i, cut in enumerate([0, 90, 91, 200, len(heads)][1:]):
        mine = set(heads[at:cut])
        shards.append(_shard(parsed, f"s{i}", [(h, h.upper(), [f"alias {h[1:]}"], None) for h in heads[at:cut]],
                             [t for t in triples if t[0] in mine]))
        at = cut
    kg = _assemble(tmp_path, shards, bucket_rows=300)
    assert kg.manifest["extra"]["build"]["csr_buckets"] > 3
    reference = kg_from_triples(triples)
    assert sorted(kg.triple_keys(i) for i in range(kg.num_triples)) == sorted(triples)
    # The mapped CSR is exactly what the in-memory build makes of the same (id-form) triples.
    expected = Adjacency.from_triples(np.asarray(kg.heads), np.asarray(kg.tails), kg.num_entities)
    for name in ("indptr", "nbr", "edge", "back"):
        np.testing.assert_array_equal(getattr(kg.adjacency, name), getattr(expected, name), err_msg=name)
    # Same graph as the in-memory KG up to the renaming of ids: equal degree per key.
    assert {k: int(kg.adjacency.degree[kg.id_of(k)]) for k in keys if kg.id_of(k) is not None} == \
        {k: int(reference.adjacency.degree[reference.id_of(k)]) for k in keys if reference.id_of(k) is not None}
    # The alias index built by name buckets equals the one built in one piece.
    from kale_ray.kg.alias import AliasIndex, name_rows

    whole = AliasIndex.build(name_rows(np.arange(kg.num_entities), list(kg.keys), list(kg.labels),
                                       kg.aliases.to_pylist()), kg.adjacency.degree)
    assert kg.manifest["extra"]["build"]["name_buckets"] > 1
    np.testing.assert_array_equal(kg.alias_index.ptr, whole.ptr)
    np.testing.assert_array_equal(kg.alias_index.ids, whole.ids)
    assert list(kg.alias_index.names) == list(whole.names)


def test_a_loaded_kg_is_memory_mapped_and_searches_as_the_in_memory_csr() -> None:
    kg = load_kg(build_kg("wordnet", Path("/usr/share/wordnet"), CACHE / "wordnet"))
    adj = kg.adjacency
    for arr in (adj.indptr, adj.nbr, adj.edge, adj.back, kg.heads, kg.relations, kg.alias_index.ids,
                kg.keys.data):
        assert not arr.flags.owndata and isinstance(arr.base, np.memmap)   # a view of the mapped file
    in_memory = Adjacency.from_triples(np.array(kg.heads), np.array(kg.tails), kg.num_entities)
    rng = np.random.default_rng(3)
    sources = rng.integers(0, kg.num_entities, 300)
    targets = np.array([adj.nbr[adj.indptr[s]] if adj.indptr[s + 1] > adj.indptr[s] else s for s in
                        rng.integers(0, kg.num_entities, 300)])
    limits = SearchLimits(max_hops=3, max_paths=8)
    mapped = PathSearcher(adj, limits).search_many(sources, targets)
    plain = PathSearcher(in_memory, limits).search_many(sources, targets)
    for a, b in zip(mapped, plain, strict=True):
        assert (a.nodes, a.steps, a.nodes_expanded) == (b.nodes, b.steps, b.nodes_expanded)
    assert sum(bool(r.nodes) for r in mapped) > 0


class DictLinker:
    """The linker before the on-disk index (kale_ray/kg/link.py up to issue 18), kept as the reference:
    a Python dict of every normalised name, ranked per name."""

    def __init__(self, kg, hub_share: float = 0.01, min_hub_degree: int = 50, candidates: int = 2) -> None:  # noqa: ANN001
        self.kg, self.candidates = kg, candidates
        degree = np.asarray(kg.adjacency.degree)
        self.hubs = degree > max(hub_share * kg.num_entities, min_hub_degree)
        index: dict[str, list[int]] = {}
        aliases = kg.aliases.to_pylist()
        keys, labels_raw = list(kg.keys), list(kg.labels)
        for eid, (key, label, more) in enumerate(zip(keys, labels_raw, aliases, strict=True)):
            for name in {key, label, *(more or [])}:
                norm = normalize(name or "")
                if norm:
                    index.setdefault(norm, []).append(eid)
        labels = [normalize(label or "") for label in labels_raw]

        def rank(alias: str, e: int) -> tuple[int, int, int, int]:
            label = labels_raw[e] or ""
            return (labels[e] != alias, label[:1].isupper(), -int(degree[e]), e)

        self.index = {alias: sorted(set(ids), key=lambda e: rank(alias, e)) for alias, ids in index.items()}
        self.max_tokens = max((alias.count(" ") + 1 for alias in self.index), default=1)

    def lookup(self, norm: str) -> list[int]:
        ids = self.index.get(norm)
        if ids is None:
            words = norm.split(" ")
            single = singular(words[-1])
            if single:
                ids = self.index.get(" ".join([*words[:-1], single]))
        return ids or []

    def exact(self, text: str) -> list[int]:
        eid = self.kg.id_of(text.strip())
        if eid is not None:
            return [eid]
        norm = normalize(text)
        if not norm or all(w in STOP_WORDS for w in norm.split()):
            return []
        return self.lookup(norm)[: self.candidates]

    def link_text(self, text: str, allow_hubs: bool = False) -> list[int]:
        tokens = normalize(text).split()
        found: list[int] = []
        i = 0
        while i < len(tokens):
            for j in range(min(len(tokens), i + self.max_tokens), i, -1):
                words = tokens[i:j]
                if all(w in STOP_WORDS for w in words):
                    continue
                ids = [e for e in self.lookup(" ".join(words)) if allow_hubs or not self.hubs[e]]
                if ids:
                    found.extend(e for e in ids[: self.candidates] if e not in found)
                    i = j
                    break
            else:
                i += 1
        return found

    def link_answer(self, text: str) -> list[int]:
        return self.exact(text) or self.link_text(text, allow_hubs=True)

    def link_question(self, question: str, topic: str | None = None) -> list[int]:
        if topic:
            ids = self.exact(topic)
            if ids:
                return ids
        return self.link_text(question)


@pytest.mark.parametrize("source", [pytest.param("wordnet", marks=pytest.mark.slow), "metaqa"])
def test_alias_index_links_exactly_as_the_dict_linker(source: str, data_root: Path) -> None:
    """Every name's ranked ids and the links of real questions (WordNet: ARC-Easy, CommonsenseQA,
    OpenBookQA; MetaQA: 1- and 2-hop) equal the dict linker's. WordNet is `slow` (its dict alone ~10 s)."""
    from kale_ray.data.benchmarks import load_benchmark

    where = data_root / "metaqa" / "kb.txt" if source == "metaqa" else Path("/usr/share/wordnet")
    kg = load_kg(build_kg(source, where, CACHE / source))
    new, old = Linker(kg), DictLinker(kg)
    assert new.max_tokens == old.max_tokens and len(new.index) == len(old.index)
    names = list(old.index)
    for name, got in zip(names, new.index.get_many(names), strict=True):   # every name, every ranked id list
        assert got is not None and got.tolist() == old.index[name], name
    rows = []
    for bench in (["metaqa-1hop", "metaqa-2hop"] if source == "metaqa" else
                  ["arc-easy", "commonsenseqa", "openbookqa"]):
        rows.extend(load_benchmark(bench, data_root).slice(0, 300).to_pylist())
    assert len(rows) >= 300
    for row in rows:
        assert new.link_question(row["question"], row.get("topic")) == old.link_question(row["question"],
                                                                                         row.get("topic"))
        for answer in [a for a in (row.get("answers") or []) if a] or [row["gold_text"]]:
            assert new.link_answer(answer) == old.link_answer(answer)


def test_a_malformed_dump_line_is_counted_not_fatal(tmp_path: Path) -> None:
    import json

    good = {"type": "item", "id": "Q1", "labels": {"en": {"value": "one"}}, "claims": {"P1": [
        {"rank": "normal", "mainsnak": {"snaktype": "value", "datavalue": {"value": {"entity-type": "item",
                                                                                     "id": "Q2"}}}}]}}
    lines = np.array(["[", json.dumps(good) + ",", "{not json},", '{"type": "lexeme", "id": "L1"},', "[1, 2],", "]"])
    row = parse_lines(lines, str(tmp_path / "kg" / ".build" / "parsed"))
    from kale_ray.kg.build import ShardSummary

    summary = ShardSummary.from_row(row["summary"][0])
    assert summary.entities == 1 and summary.edges == 1 and sum(summary.skipped.values()) == 3
    kg = _assemble(tmp_path, [summary], bucket_rows=1000)
    assert kg.manifest["counts"]["skipped"] == 3 and kg.triple_keys(0) == ("Q1", "P1", "Q2")


def test_a_generated_dump_is_the_same_whatever_files_and_processes_write_it(tmp_path: Path) -> None:
    import gzip

    from kale_ray.kg.dumpgen import write_dump

    one = write_dump(tmp_path / "one.json.gz", items=25_000, statements_per_item=3, seed=4, malformed=2)
    many = write_dump(tmp_path / "parts", items=25_000, statements_per_item=3, seed=4, malformed=2, parts=3,
                      processes=2)
    assert {**one, "files": 3} == many and one["statements"] > 25_000
    files = sorted((tmp_path / "parts").iterdir())
    assert len(files) == 3
    text = gzip.decompress((tmp_path / "one.json.gz").read_bytes())
    assert b"".join(gzip.decompress(f.read_bytes()) for f in files) == text
    assert text.startswith(b"[\n") and text.endswith(b"]\n") and text.count(b"{not json}") == 2
    other = write_dump(tmp_path / "seed5.json.gz", items=25_000, statements_per_item=3, seed=5)
    assert other["statements"] != one["statements"]
