"""KG build: sources -> Parquet tables + memory-mapped arrays + manifest, read back by load_kg."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kale_ray.kg.stage import build_kg
from kale_ray.kg.store import KGError, load_kg

WORDNET = Path("/usr/share/wordnet")


def _triples(kg) -> list[tuple[str, str, str]]:  # noqa: ANN001
    return [kg.triple_keys(i) for i in range(kg.num_triples)]


def test_metaqa_kb_keeps_parallel_edges_self_loops_and_counts_skips(tmp_path: Path) -> None:
    kb = tmp_path / "kb.txt"
    kb.write_text("Kismet|directed_by|William Dieterle\n"
                  "Kismet|written_by|William Dieterle\n"      # parallel edge, other relation
                  "Kismet|directed_by|William Dieterle\n"     # exact duplicate: still an edge
                  "Loop|related_to|Loop\n"                     # self-loop
                  "bad line without separators\n"
                  "a|b\n"
                  "|directed_by|Nobody\n"
                  "\n")
    out = build_kg("metaqa", kb, tmp_path / "kg")
    kg = load_kg(out)
    assert kg.num_entities == 3 and kg.num_triples == 4
    assert _triples(kg).count(("Kismet", "directed_by", "William Dieterle")) == 2
    assert ("Loop", "related_to", "Loop") in _triples(kg)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["skipped"] == 3 and manifest["counts"]["self_loops"] == 1
    reasons = manifest["extra"]["skipped"]["reasons"]
    assert reasons == {"expected head|relation|tail, got 1 fields": 1,
                       "expected head|relation|tail, got 2 fields": 1, "empty head, relation or tail": 1}
    arrays = {f"arrays/{name}.npy" for name in ("heads", "relations", "tails", "indptr", "nbr", "edge", "back",
                                                "key.off", "key.bytes", "label.off", "label.bytes", "key_order",
                                                "alias.off", "alias.bytes", "alias_ptr", "alias_ids")}
    assert set(manifest["files"]) == {"entities.parquet", "relations.parquet", "triples.parquet"} | arrays
    # The networkit graph (built from the mapped arrays) is the same directed multigraph.
    graph = kg.networkit_graph()
    assert graph.isDirected() and graph.numberOfEdges() == 4 and graph.numberOfSelfLoops() == 1
    # Search adjacency: distinct neighbours, no self-loop, forward edge preferred.
    adj = kg.adjacency
    k = kg.id_of("Kismet")
    assert adj.nbr[adj.indptr[k]:adj.indptr[k + 1]].tolist() == [kg.id_of("William Dieterle")]
    assert not adj.back[adj.indptr[k]]
    assert adj.degree[kg.id_of("Loop")] == 0


def test_build_skips_when_complete_and_rebuilds_when_input_changes(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    kb = tmp_path / "kb.txt"
    kb.write_text("A|r|B\n")
    out = build_kg("metaqa", kb, tmp_path / "kg")
    build_kg("metaqa", kb, out)
    assert "skipping" in capsys.readouterr().out
    kb.write_text("A|r|B\nB|r|C\n")
    assert load_kg(build_kg("metaqa", kb, out)).num_triples == 2


def test_load_kg_rejects_a_graph_that_disagrees_with_the_tables(tmp_path: Path) -> None:
    kb = tmp_path / "kb.txt"
    kb.write_text("A|r|B\nB|r|C\n")
    out = build_kg("metaqa", kb, tmp_path / "kg")
    table = pq.read_table(out / "triples.parquet").slice(0, 1)
    pq.write_table(table, out / "triples.parquet")
    with pytest.raises(KGError, match="rebuild the KG"):
        load_kg(out)
    with pytest.raises(KGError, match="not a KG artifact"):
        load_kg(tmp_path)


def test_triples_tsv_with_header_and_wikidata_style_label_files(tmp_path: Path) -> None:
    (tmp_path / "t.tsv").write_text("head\trelation\ttail\nQ42\tP69\tQ691283\nQ42\tP31\tQ5\nQ42\tP69\n")
    (tmp_path / "ents.tsv").write_text("Q42\tDouglas Adams\tDouglas Noel Adams|DNA\nQ691283\tSt John's College\n"
                                       "Q5\thuman\nbroken\n")
    (tmp_path / "rels.tsv").write_text("P69\teducated at\nP31\tinstance of\n")
    out = build_kg("triples", tmp_path / "t.tsv", tmp_path / "kg", entity_labels=tmp_path / "ents.tsv",
                   relation_labels=tmp_path / "rels.tsv")
    kg = load_kg(out)
    assert _triples(kg) == [("Q42", "P69", "Q691283"), ("Q42", "P31", "Q5")]
    assert kg.labels[kg.id_of("Q42")] == "Douglas Adams"
    assert kg.aliases[kg.id_of("Q42")].as_py() == ["Douglas Noel Adams", "DNA"]
    assert kg.relation_labels[kg.relation_keys.index("P69")] == "educated at"
    assert kg.manifest["counts"]["skipped"] == 2


def test_triples_csv_and_parquet(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text('a,"likes, a lot",b\nb,likes,c\n')
    kg = load_kg(build_kg("triples", tmp_path / "t.csv", tmp_path / "kg1"))
    assert _triples(kg) == [("a", "likes, a lot", "b"), ("b", "likes", "c")]
    pq.write_table(pa.table({"head": ["x", "y"], "relation": ["r", "r"], "tail": ["y", "x"]}), tmp_path / "t.parquet")
    kg = load_kg(build_kg("triples", tmp_path / "t.parquet", tmp_path / "kg2"))
    assert _triples(kg) == [("x", "r", "y"), ("y", "r", "x")]


def shared_build_dir(name: str) -> Path:
    """Test KGs of the real sources live in one temp dir: build_kg skips a complete, unchanged build."""
    return Path(tempfile.gettempdir()) / f"kale-ray-tests-{os.getuid()}" / "kg-layout2" / name


@pytest.fixture(scope="module")
def wordnet_kg(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    if not (WORDNET / "data.noun").is_file():
        pytest.fail("WordNet database files missing: apt-get install wordnet-base wordnet-sense-index")
    return load_kg(build_kg("wordnet", WORDNET, shared_build_dir("wordnet")))


def test_wordnet_synsets_lemmas_and_pointers(wordnet_kg) -> None:  # noqa: ANN001
    kg = wordnet_kg
    assert kg.num_entities == 117659  # every WordNet 3.0 synset
    dog = kg.id_of("02084071-n")
    assert kg.labels[dog] == "dog" and "domestic dog" in kg.aliases[dog].as_py()
    triples = set(_triples(kg))
    assert ("02084071-n", "hypernym", "02083346-n") in triples        # dog -> canine
    assert ("02083346-n", "hyponym", "02084071-n") in triples        # and the reverse pointer, kept
    assert {"antonym", "part_meronym", "entailment", "cause", "similar_to", "attribute",
            "derivationally_related"} <= set(kg.relation_keys)
    assert kg.manifest["counts"]["skipped"] == 0
