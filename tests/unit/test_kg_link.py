"""Entity linking: normalisation, longest multi-word match, stop-words, hubs, concept nodes."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pyarrow as pa

from kale_ray.config import load_config
from kale_ray.data.benchmarks import SCHEMA
from kale_ray.kg.extract import RowPathFinder, add_path_columns
from kale_ray.kg.link import Linker, normalize
from kale_ray.kg.sources.base import KGBuilder
from kale_ray.kg.stage import build_kg
from kale_ray.kg.store import load_kg


def small_kg():  # noqa: ANN201
    b = KGBuilder()
    b.entity("new_york", "New York City", aliases=["New York", "NYC"])
    b.entity("york", "York")
    b.entity("white", "white", aliases=["whiteness"])
    b.entity("snow", "snow")
    b.entity("cafe", "Café")
    b.entity("the", "The")           # an alias made only of a stop-word
    b.entity("hub", "thing")
    b.triple("snow", "has_colour", "white")
    b.triple("new_york", "near", "york")
    b.triple("cafe", "located_in", "new_york")
    for i in range(60):               # "thing" is a hub: linked to every other node
        b.triple("hub", "related", f"x{i}")
    b.triple("hub", "related", "snow")
    return b.to_kg()


def test_normalize_strips_accents_case_and_punctuation() -> None:
    assert normalize("  Café, New-York! ") == "cafe new york"


def test_longest_multi_word_match_stop_words_and_plural() -> None:
    linker = Linker(small_kg(), hub_share=0.5, min_hub_degree=50)
    kg = linker.kg
    mentions = linker.mentions("Is the snow in New York City whiter than in the cafés of York?")
    assert [m.text for m in mentions] == ["snow", "new york city", "cafes", "york"]
    assert [kg.keys[m.ids[0]] for m in mentions] == ["snow", "new_york", "cafe", "york"]
    assert linker.link_text("the THE the") == []      # stop-words never link


def test_hubs_are_not_linked_from_questions_but_may_be_answers() -> None:
    linker = Linker(small_kg(), hub_share=0.5, min_hub_degree=50)
    hub = linker.kg.id_of("hub")
    assert linker.hubs[hub]
    assert hub not in linker.link_question("Which thing is white?")
    assert linker.link_answer("thing") == [hub]
    assert linker.link_question("ignored text", topic="New York") == [linker.kg.id_of("new_york")]
    assert linker.link_answer("a very white colour") == [linker.kg.id_of("white")]


def test_concept_nodes_link_on_wordnet() -> None:
    """Common nouns and adjectives are WordNet synsets: "white" and "snow" must link."""
    cache = Path(tempfile.gettempdir()) / f"kale-ray-tests-{os.getuid()}" / "kg-layout2" / "wordnet"
    kg = load_kg(build_kg("wordnet", Path("/usr/share/wordnet"), cache))
    linker = Linker(kg)
    white = linker.link_answer("white")
    assert [kg.keys[e] for e in white] == ["04960729-n", "00393105-a"]  # the colour, noun and adjective
    q = linker.link_question("What colour is fresh snow?")
    assert any(kg.labels[e] == "snow" for e in q)
    assert linker.link_question("the of and") == []


def test_row_finder_statuses_and_errors_are_recorded_per_row() -> None:
    cfg = load_config(None, ["kg.min_hub_degree=50", "kg.max_entity_degree_share=0.5"])
    finder = RowPathFinder(small_kg(), cfg.kg.model_dump(), cfg.paths.model_dump(), seed=0)

    def row(question: str, gold: str, rid: str) -> dict:
        return {"id": rid, "benchmark": "t", "question": question, "choices": [gold, "other"], "gold": 0,
                "gold_text": gold, "answers": [gold], "topic": None, "subject": None, "source": "x"}

    rows = [row("What colour is snow?", "white", "1"), row("Unlinkable words only?", "white", "2"),
            row("What colour is snow?", "zzz", "3"), row("Where is the café?", "white", "4"),
            {**row("x", "white", "5"), "question": None}]
    results = finder.process_batch(rows)  # one search_many call for the whole batch
    assert [r["path_status"] for r in results] == ["ok", "no_question_entity", "no_answer_entity",
                                                   "no_path", "error"]
    assert results == [{**finder.process(r), "search_seconds": out["search_seconds"]}
                       for r, out in zip(rows, results, strict=True)]  # = row by row, timings aside
    assert results[0]["q_entities"] == ["snow"] and results[0]["a_entities"] == ["white"]
    assert json.loads(results[0]["paths"]) == [[["snow", "has_colour", "white", False]]]
    assert results[0]["path_texts"] == ["snow has colour white."]
    assert results[3]["nodes_expanded"] > 0 and results[3]["paths"] == "[]"
    assert results[4]["path_error"].startswith("AttributeError") or results[4]["path_error"].startswith("TypeError")
    table = add_path_columns(pa.Table.from_pylist([{**r, "question": r["question"] or ""} for r in rows],
                                                  schema=SCHEMA), results)
    assert table.schema.names[: len(SCHEMA)] == SCHEMA.names and table.num_rows == 5


def test_row_finder_searches_row_by_row_when_the_batched_search_fails() -> None:
    """Fault injection: should search_many raise, every row is still searched (one by one) and only the
    row whose search fails records the error."""
    cfg = load_config(None, ["kg.min_hub_degree=50", "kg.max_entity_degree_share=0.5"])
    finder = RowPathFinder(small_kg(), cfg.kg.model_dump(), cfg.paths.model_dump(), seed=0)
    rows = [{"id": str(i), "question": q, "gold_text": "white", "answers": ["white"], "topic": None}
            for i, q in enumerate(["What colour is snow?", "Where is the café?"])]
    expected = finder.process_batch(rows)
    search = finder.searcher.search

    def broken_batch(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("batched search failed")

    def search_failing_on_cafe(source: int, target: int, max_hops: int | None = None):  # noqa: ANN202
        if finder.kg.keys[source] == "cafe":
            raise RuntimeError("bad pair")
        return search(source, target, max_hops)

    finder.searcher.search_many = broken_batch
    again = finder.process_batch(rows)
    assert [r["paths"] for r in again] == [r["paths"] for r in expected]
    finder.searcher.search = search_failing_on_cafe
    failed = finder.process_batch(rows)
    assert [r["path_status"] for r in failed] == ["ok", "error"]
    assert failed[1]["path_error"] == "RuntimeError: bad pair" and failed[0]["paths"] == expected[0]["paths"]
