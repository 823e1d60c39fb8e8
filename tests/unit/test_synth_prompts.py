"""Prompts, option-letter hygiene, degenerate-output checks and row planning, on real ARC-Easy rows."""

from __future__ import annotations

import json

import pytest

from kale_ray.synth.backends.template import TemplateBackend
from kale_ray.synth.prompts import (
    build_messages,
    check_rationale,
    contains_option_letter,
    parse_paths,
    strip_option_letters,
)
from kale_ray.synth.rows import output_schema, plan_row, write_rationales
from tests.synth_support import arc_rows, with_paths

CHOICES = ["dry palms", "wet palms", "palms covered with oil", "palms covered with lotion"]


@pytest.fixture(scope="module")
def rows(data_root):
    return arc_rows(data_root, 8)


def test_ki_prompt_has_question_answer_and_paths_but_no_options(rows):
    row = with_paths(rows[0], found=True)
    user = build_messages(row, ki=True)[-1]["content"]
    assert row["question"] in user and row["gold_text"] in user
    assert row["path_texts"][0] in user
    for choice in row["choices"]:
        if choice != row["gold_text"] and choice not in row["question"]:
            assert choice not in user
    assert "(A)" not in user and "Options" not in user


def test_without_ki_prompt_has_no_paths(rows):
    row = with_paths(rows[0], found=True)
    user = build_messages(row, ki=False)[-1]["content"]
    assert row["question"] in user and row["gold_text"] in user
    assert row["path_texts"][0] not in user and "Facts that may help" not in user


def test_prompt_caps_and_dedupes_paths(rows):
    row = {**with_paths(rows[1], found=True), "path_texts": ["a is b", "a is b", "c is d", "e is f"]}
    user = build_messages(row, ki=True, max_paths=2)[-1]["content"]
    assert user.count("- a is b") == 1 and "- c is d" in user and "e is f" not in user


@pytest.mark.parametrize("text,expected", [
    ("The answer is (B) because the palms are wet.", "The answer is \"wet palms\" because"),
    ("So option C fits best.", "So \"palms covered with oil\" fits best."),
    ("Answer: D.", "Answer \"palms covered with lotion\"."),
    ("B) wet hands grip less.", "wet hands grip less."),
])
def test_option_letters_become_option_text(text, expected):
    cleaned = strip_option_letters(text, CHOICES)
    assert expected in cleaned
    assert not contains_option_letter(cleaned, len(CHOICES))


def test_articles_and_acronyms_are_not_letters():
    text = "A plant needs light. The answer is A plant that grows. DNA carries genes."
    assert strip_option_letters(text, CHOICES) == text
    assert not contains_option_letter(text, len(CHOICES))


def test_degenerate_outputs_are_flagged():
    assert check_rationale("", "stop", CHOICES).degenerate == "empty"
    assert check_rationale("   ok.  ", "stop", CHOICES).degenerate == "empty"
    looped = "Wet palms slip on the rope. " * 5
    assert check_rationale(looped, "length", CHOICES).degenerate == "repeated"
    cut = "Friction between the hands and the rope depends on how dry the"
    assert check_rationale(cut, "length", CHOICES).degenerate == "cut off"
    assert check_rationale(cut + " palms are.", "length", CHOICES).degenerate is None
    good = check_rationale("Rationale: Dry palms give more friction, so the grip holds.", "stop", CHOICES)
    assert good.degenerate is None and good.text.startswith("Dry palms")


def test_plan_follows_paths_and_policy(rows):
    found, missing = with_paths(rows[0], True), with_paths(rows[1], False)
    assert plan_row(found, ki=True, no_path="fallback", max_paths=4).base_status == "ok"
    assert plan_row(found, ki=True, no_path="fallback", max_paths=4).ki
    assert not plan_row(found, ki=False, no_path="fallback", max_paths=4).ki  # the w/o-KI ablation
    assert plan_row(missing, ki=True, no_path="fallback", max_paths=4).base_status == "fallback"
    assert plan_row(missing, ki=True, no_path="drop", max_paths=4).base_status == "dropped"
    assert plan_row(missing, ki=True, no_path="fallback", max_paths=4, needs_paths=True).base_status == "no_rationale"
    assert plan_row(found, ki=False, no_path="fallback", max_paths=4, needs_paths=True).base_status == "no_rationale"
    empty_texts = {**found, "path_texts": []}
    assert plan_row(empty_texts, ki=True, no_path="drop", max_paths=4).base_status == "dropped"


def test_template_rationales_on_real_rows(rows):
    import pyarrow as pa

    from tests.synth_support import PATHS_SCHEMA

    table = [with_paths(r, found=i % 2 == 0) for i, r in enumerate(rows)]
    out = write_rationales(table, TemplateBackend(4), ki=True, no_path="fallback", max_paths=4,
                           generator={"backend": "template"})
    assert [r["id"] for r in out] == [r["id"] for r in table]
    for i, row in enumerate(out):
        # Paths verbalised and nothing else: a row without paths gets no rationale, never "the answer is X".
        assert row["status"] == ("ok" if i % 2 == 0 else "no_rationale")
        assert row["ki"] == (i % 2 == 0)
        if row["ki"]:
            assert row["rationale"] == " ".join(t + "." for t in row["path_texts"])
            assert "answer" not in row["rationale"].lower()
            assert not contains_option_letter(row["rationale"], len(row["choices"]))
            assert "Facts that may help" in row["prompt"]
        else:
            assert row["rationale"] is None and row["prompt"] == "" and row["tokens"] == 0
        assert json.loads(row["generator"]) == {"backend": "template"}
    again = write_rationales(table, TemplateBackend(4), ki=True, no_path="fallback", max_paths=4,
                             generator={"backend": "template"})
    assert again == out  # deterministic
    assert pa.Table.from_pylist(out, schema=output_schema(PATHS_SCHEMA)).num_rows == len(rows)


def test_template_writes_nothing_without_paths_and_is_no_wo_ki_arm(rows):
    """The template is a labelled control: asked for the w/o-KI ablation (paths withheld) it writes
    nothing, and a config that asks it for KALE w/o KI fails before anything runs."""
    from kale_ray.config import ConfigError, load_config

    table = [with_paths(r, found=True) for r in rows[:3]]
    out = write_rationales(table, TemplateBackend(4), ki=False, no_path="fallback", max_paths=4, generator={})
    assert [r["status"] for r in out] == ["no_rationale"] * 3 and all(r["rationale"] is None for r in out)
    for bad in (["train.methods=[sft, ka-noki]"], ["synth.ki=false"]):
        with pytest.raises(ConfigError, match="template writer verbalises KG paths only"):
            load_config(overrides=bad)
    assert load_config(overrides=["train.methods=[ka-noki]", "synth.backend=hf"]).train.methods == ["ka-noki"]


def test_dropped_rows_are_kept_and_labelled(rows):
    table = [with_paths(r, found=False) for r in rows[:3]]
    out = write_rationales(table, TemplateBackend(4), ki=True, no_path="drop", max_paths=4, generator={})
    assert [r["status"] for r in out] == ["dropped"] * 3
    assert all(r["rationale"] is None and r["tokens"] == 0 for r in out)


def test_parse_paths_tolerates_bad_json():
    assert parse_paths("not json") == [] and parse_paths(None) == []
    assert parse_paths('[[["a", "r", "b", false]]]') == [[["a", "r", "b", False]]]


def test_template_output_is_not_judged_for_repetition():
    facts_text = ("unit hyponym linear unit; linear unit hyponym astronomy unit; astronomy unit hyponym light year. "
                  * 3 + "These facts lead from the question to the answer: light-year.")
    assert check_rationale(facts_text, "stop", CHOICES, llm=False).degenerate is None
    assert check_rationale(facts_text, "stop", CHOICES, llm=True).degenerate == "repeated"


QUESTION = "Which type of palms would give the best grip on a rope?"


@pytest.mark.parametrize(("text", "finish", "kind"), [
    ("Dry palms grip.", "stop", "too short"),
    ("Question: Which type of palms would give the best grip?\nCorrect answer: dry palms", "stop", "repeats the prompt"),
    (QUESTION, "stop", "repeats the question"),
    (f"{QUESTION} The answer is dry palms.", "stop", "repeats the question"),
    ("Think about climbing ropes in a gym and how people hold on to them tightly.", "stop", "no answer"),
    ("Climbers chalk their hands because moisture reduces friction; dry hands hold best.", "stop", None),
    ("Oil makes a surface slippery, so palms covered with oil slide along the rope.", "stop", None),
])
def test_more_degenerate_kinds_are_flagged(text, finish, kind):
    verdict = check_rationale(text, finish, CHOICES, question=QUESTION, gold="dry palms")
    assert verdict.degenerate == kind, verdict


def test_an_answer_is_seen_through_its_stem_and_numbers_by_word():
    from kale_ray.synth.prompts import mentions

    assert mentions("Water evaporates when the sun heats it.", "evaporation")
    assert mentions("The group has order 4, since 2 squared is 4.", "4") and not mentions("It has order 14.", "4")
    assert not mentions("Rain falls from clouds.", "evaporation")


def test_template_text_is_not_judged_as_an_llm():
    # A verbalised path names KG labels, not the option's words: the LLM checks do not apply to it.
    assert check_rationale("palm is a kind of hand part.", "stop", CHOICES, llm=False, question=QUESTION,
                           gold="dry palms").degenerate is None


def test_the_degenerate_rate_counts_what_the_writer_wrote():
    import pyarrow as pa

    from kale_ray.synth.stage import degenerate_record

    final = pa.table({"status": ["ok", "fallback", "degenerate", "degenerate", "dropped", "error", "no_rationale"],
                      "error_kind": [None, None, "no answer", "repeated", None, "endpoint", None]})
    assert degenerate_record(final) == {"judged": 4, "degenerate": 2, "rate": 0.5,
                                        "kinds": {"no answer": 1, "repeated": 1}}


@pytest.mark.parametrize(("text", "gold", "kind"), [
    ('The correct answer is "It helps explain how things work."', "It helps explain how things work.", "answer only"),
    ("The answer to this question is dry palms, so dry palms it is.", "dry palms", "answer only"),
    ("Dry palms are the correct answer because dry skin grips the rope with more friction.", "dry palms", None),
])
def test_a_restated_answer_is_no_rationale(text, gold, kind):
    assert check_rationale(text, "stop", CHOICES, question=QUESTION, gold=gold).degenerate == kind


def test_a_rationale_cut_at_the_cap_keeps_its_finished_sentences():
    text = "Dry hands hold the rope firmly because friction is higher. Wet hands instead slip along the"
    verdict = check_rationale(text, "length", CHOICES, question=QUESTION, gold="dry palms")
    assert verdict.degenerate is None and verdict.text == "Dry hands hold the rope firmly because friction is higher."
    assert check_rationale(text, "length", CHOICES, llm=False).degenerate == "cut off"  # the template is never cut
