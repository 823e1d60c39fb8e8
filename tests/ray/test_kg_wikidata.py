"""The Wikidata JSON dump source, parsed with Ray Data, on a small sample written in the dump's format."""

from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path

import pytest

from kale_ray.kg.stage import build_kg
from kale_ray.kg.store import load_kg

pytestmark = pytest.mark.ray


def item(qid: str, label: str | None, claims: dict, aliases: tuple[str, ...] = (), kind: str = "item") -> dict:
    entity = {"type": kind, "id": qid, "labels": {}, "aliases": {}, "descriptions": {}, "claims": claims}
    if label:
        entity["labels"] = {"en": {"language": "en", "value": label}, "de": {"language": "de", "value": label + "_de"}}
        entity["descriptions"] = {"en": {"language": "en", "value": f"about {label}"}}
    if aliases:
        entity["aliases"] = {"en": [{"language": "en", "value": a} for a in aliases]}
    return entity


def statement(prop: str, value: dict | str, rank: str = "normal", snaktype: str = "value") -> dict:
    if isinstance(value, str):
        datavalue = {"value": {"entity-type": "item", "numeric-id": int(value[1:]), "id": value},
                     "type": "wikibase-entityid"}
    else:
        datavalue = value
    return {"mainsnak": {"snaktype": snaktype, "property": prop, "datavalue": datavalue}, "type": "statement",
            "rank": rank}


def sample_dump(path: Path, opener) -> Path:  # noqa: ANN001
    entities = [
        item("Q42", "Douglas Adams", {
            "P31": [statement("P31", "Q5")],
            "P69": [statement("P69", "Q691283"), statement("P69", "Q4961791", rank="deprecated")],
            "P19": [statement("P19", "Q350")],
            "P569": [statement("P569", {"value": {"time": "+1952-03-11T00:00:00Z"}, "type": "time"})],
            "P1": [statement("P1", "Q1", snaktype="novalue")]},
            aliases=("Douglas Noel Adams", "DNA")),
        item("Q5", "human", {}),
        item("Q691283", "St John's College", {"P131": [statement("P131", "Q350")]}),
        item("P69", "educated at", {}, kind="property"),
        item("P31", "instance of", {}, kind="property"),
    ]
    lines = ["["] + [json.dumps(e) + "," for e in entities[:-1]] + ["{not json},", json.dumps(entities[-1]), "]"]
    with opener(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("suffix,opener", [(".json.gz", gzip.open), (".json.bz2", bz2.open)])
def test_wikidata_dump_to_kg(ray_local, tmp_path: Path, suffix: str, opener) -> None:  # noqa: ANN001
    dump = sample_dump(tmp_path / f"latest-all{suffix}", opener)
    kg = load_kg(build_kg("wikidata", dump, tmp_path / "kg"))
    triples = sorted(kg.triple_keys(i) for i in range(kg.num_triples))
    # Item-to-item statements only; the deprecated one, the time value and the novalue snak are left out.
    assert triples == [("Q42", "P19", "Q350"), ("Q42", "P31", "Q5"), ("Q42", "P69", "Q691283"),
                       ("Q691283", "P131", "Q350")]
    q42 = kg.id_of("Q42")
    assert kg.labels[q42] == "Douglas Adams" and kg.aliases[q42].as_py() == ["Douglas Noel Adams", "DNA"]
    assert kg.labels[kg.id_of("Q350")] == "Q350"  # an object with no entity line keeps its id
    labels = dict(zip(kg.relation_keys, kg.relation_labels, strict=True))
    assert labels["P69"] == "educated at" and labels["P31"] == "instance of" and labels["P19"] == "P19"
    manifest = kg.manifest
    assert manifest["counts"]["skipped"] == 1
    assert manifest["extra"]["skipped"]["reasons"] == {"invalid JSON (Expecting property name enclosed in double quotes)": 1}
    assert manifest["extra"]["source_info"] == {"items": 3, "properties": 2, "tails_without_entity": 2}


def test_a_streamed_build_into_an_object_store_runs_on_one_node(ray_local, tmp_path: Path, s3_store) -> None:
    """Its tasks share scratch files, so with an s3:// workdir the build runs in one task pinned to that
    task's node; the artifact reaches the store, and a node with an empty mirror loads it from there."""
    import shutil

    from kale_ray import storage

    dump = sample_dump(tmp_path / "latest-all.json.gz", gzip.open)
    root = storage.local_root(f"{s3_store.uri}/kg-pinned")
    out = build_kg("wikidata", dump, root / "kg")
    prefix = "session/kg-pinned/kg/"
    keys = s3_store.keys(prefix)
    assert prefix + "manifest.json" in keys and prefix + "arrays/indptr.npy" in keys
    assert not any("/.build/" in k for k in keys), "scratch files stay on the node that built"
    shutil.rmtree(root)
    kg = load_kg(out)
    assert kg.labels[kg.id_of("Q42")] == "Douglas Adams" and kg.num_triples == 4
