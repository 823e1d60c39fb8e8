"""Loaders read the real files; counts are those in ../shared/data/README.md."""

import json

import pyarrow as pa
import pytest

from kale_ray.data.benchmarks import SCHEMA, BenchmarkError, LoadReport, load_benchmark
from kale_ray.data.split import split_table


@pytest.mark.parametrize("name, split, count", [
    ("arc-easy", "dev", 100), ("arc-easy", "test", 2376),
    ("arc-challenge", "dev", 100), ("arc-challenge", "test", 1172),
    ("commonsenseqa", "dev", 100), ("commonsenseqa", "test", 1221),
    ("openbookqa", "dev", 500), ("openbookqa", "test", 500),
    ("mmlu", "test", 14042), ("absr", "test", 200),
    ("metaqa-1hop", "test", 9992), ("metaqa-2hop", "test", 14872), ("metaqa-3hop", "test", 14274),
])
def test_real_counts(data_root, name, split, count):
    report = LoadReport()
    table = load_benchmark(name, data_root, split, report=report)
    # Rows read = unique rows + duplicates the loader drops; nothing else may go missing.
    assert table.num_rows + report.reasons.get("duplicate of an earlier row", 0) == count
    assert report.skipped == report.reasons.get("duplicate of an earlier row", 0)
    assert table.schema.equals(SCHEMA)


def test_multiple_choice_rows_are_well_formed(data_root):
    for name in ("arc-easy", "commonsenseqa", "absr", "mmlu-anatomy"):
        table = load_benchmark(name, data_root)
        for row in table.to_pylist():
            assert len(row["choices"]) >= 2 and 0 <= row["gold"] < len(row["choices"])
            assert row["gold_text"] == row["choices"][row["gold"]]
    absr = load_benchmark("absr", data_root).to_pylist()[0]
    assert absr["question"].startswith("What can be inferred") and len(absr["choices"]) == 4


def test_bbh_multiple_choice_and_generative(data_root):
    table = load_benchmark("bbh", data_root)
    assert 6000 < table.num_rows <= 6511
    rows = table.to_pylist()
    date = next(r for r in rows if r["subject"] == "date_understanding")
    assert date["choices"] and date["answers"][0] == f"({'ABCDEF'[date['gold']]})"
    boolean = next(r for r in rows if r["subject"] == "boolean_expressions")
    assert boolean["gold"] == -1 and boolean["answers"][0] in {"True", "False"}


def test_metaqa_topic_and_answer_set(data_root):
    row = load_benchmark("metaqa-1hop", data_root).to_pylist()[0]
    assert row["topic"] == "Temuera Morrison"
    assert row["answers"] == ["Once Were Warriors", "Tracker", "River Queen"]


def test_malformed_rows_counted_or_strict(tmp_path):
    path = tmp_path / "mine.jsonl"
    good = {"question": "2+2?", "choices": ["3", "4"], "answer": "B"}
    lines = [json.dumps(good), "{not json", json.dumps({"question": "q", "choices": ["a", "b"]}),
             json.dumps({"question": "text answer", "choices": ["x", "y"], "answer": "y"}), "[1]"]
    path.write_text("\n".join(lines) + "\n")
    report = LoadReport()
    table = load_benchmark(str(path), tmp_path, report=report)
    assert table.column("gold").to_pylist() == [1, 1]
    assert report.skipped == 3 and report.reasons["not a JSON object"] == 1
    with pytest.raises(BenchmarkError, match=r"mine.jsonl:2: invalid JSON"):
        load_benchmark(str(path), tmp_path, strict=True)


def test_user_parquet_and_unknown_name(tmp_path, data_root):
    path = tmp_path / "q.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"question": ["a?"], "choices": [["x", "y", "z"]], "gold": [2]}), path)
    assert load_benchmark(str(path), tmp_path).column("gold_text").to_pylist() == ["z"]
    with pytest.raises(BenchmarkError, match="arc-easy"):
        load_benchmark("no-such-bench", data_root)


def test_split_is_deterministic_disjoint_and_stable_under_additions(data_root):
    table = load_benchmark("arc-easy", data_root)
    train, test = split_table(table, 0.3, seed=0)
    assert train.num_rows + test.num_rows == table.num_rows
    assert set(train["id"].to_pylist()).isdisjoint(test["id"].to_pylist())
    assert abs(test.num_rows / table.num_rows - 0.3) < 0.03
    again = split_table(table, 0.3, seed=0)[1]
    assert again["id"].to_pylist() == test["id"].to_pylist()
    # Adding rows (here: the dev file) keeps every old row on its side.
    bigger = pa.concat_tables([table, load_benchmark("arc-easy", data_root, "dev")])
    test_ids = set(split_table(bigger, 0.3, seed=0)[1]["id"].to_pylist())
    assert set(test["id"].to_pylist()) <= test_ids
    assert split_table(table, 0.3, seed=1)[1]["id"].to_pylist() != test["id"].to_pylist()


def test_benchmark_mix_splits_and_limits_each_benchmark_alone(data_root):
    from kale_ray.config import load_config
    from kale_ray.data.load import load_splits

    base = [f"data_root={data_root}", "data.limit_train=30", "data.limit_test=7"]
    mix = load_splits(load_config(overrides=[*base, "data.benchmark=[arc-easy, absr]"]))
    alone = load_splits(load_config(overrides=[*base, "data.benchmark=arc-easy"]))
    counts = {b: mix.train.column("benchmark").to_pylist().count(b) for b in ("arc-easy", "absr")}
    assert counts == {"arc-easy": 30, "absr": 30}
    assert mix.test.column("benchmark").to_pylist().count("absr") == 7
    # arc-easy's rows are the same with or without absr beside it.
    arc = [r for r in mix.test.to_pylist() if r["benchmark"] == "arc-easy"]
    assert [r["id"] for r in arc] == alone.test.column("id").to_pylist()
    assert mix.report.rows == alone.report.rows + load_benchmark("absr", data_root).num_rows
    assert not set(mix.train.column("id").to_pylist()) & set(mix.test.column("id").to_pylist())


def test_metaqa_questions_naming_different_entities_are_distinct_rows(data_root):
    """Two films called "Eden" (and two called "Hope Springs") share a question text, not an answer set;
    only the exact repeat of a line is a duplicate."""
    report = LoadReport()
    rows = load_benchmark("metaqa-1hop", data_root, report=report).to_pylist()
    eden = [r["answers"] for r in rows if r["question"] == "who acted in the movie [Eden]"]
    assert sorted(eden) == [["Beau Bridges", "Matt O'Leary", "Jamie Chung"], ["Félix de Givry"]]
    assert report.reasons == {"duplicate of an earlier row": 1}


def _splits(data_root, *overrides):
    from kale_ray.config import load_config
    from kale_ray.data.load import load_splits

    return load_splits(load_config(overrides=[f"data_root={data_root}", *overrides]))


def test_limits_draw_a_seeded_sample_stratified_across_mmlu_subjects(data_root):
    """MMLU's files are read subject by subject: the first 40 rows were 35 abstract-algebra items. A limit
    is a sample over all 57 subjects, each in proportion to its held-out rows, the same for the same seed."""
    from collections import Counter

    from kale_ray.data.split import split_table

    base = ["data.benchmark=mmlu", "data.limit_train=32", "data.limit_test=40"]
    one = _splits(data_root, *base)
    subjects = Counter(one.test.column("subject").to_pylist())
    assert one.test.num_rows == 40 and len(subjects) >= 25 and max(subjects.values()) <= 5
    held_out = split_table(load_benchmark("mmlu", data_root), 0.3, seed=0)[1]
    share = Counter(held_out.column("subject").to_pylist())
    for subject, n in share.items():  # proportional: within one item of its exact quota
        assert abs(subjects.get(subject, 0) - 40 * n / held_out.num_rows) < 1, subject
    assert len(set(one.train.column("subject").to_pylist())) >= 20
    assert not set(one.train.column("id").to_pylist()) & set(held_out.column("id").to_pylist())
    again = _splits(data_root, *base)
    assert again.test.column("id").to_pylist() == one.test.column("id").to_pylist()
    assert again.train.column("id").to_pylist() == one.train.column("id").to_pylist()
    other = _splits(data_root, *base, "data.sample_seed=1")
    assert len(set(other.test.column("id").to_pylist()) ^ set(one.test.column("id").to_pylist())) > 20


def test_a_benchmark_of_several_files_is_sampled_across_them_and_overrides_apply_per_benchmark(data_root):
    """OpenBookQA's test and dev files are both drawn from; per_benchmark lifts AbsR's limits so it keeps
    every item not trained on, while the mix's other benchmark stays limited."""
    from collections import Counter

    mix = _splits(data_root, "data.benchmark=[openbookqa, absr]", "data.source_split=all", "data.test_fraction=0.35",
                  "data.limit_train=150", "data.limit_test=300",
                  "data.per_benchmark={absr: {test_fraction: 0.23, limit_train: null, limit_test: null}}")
    obqa = mix.test.filter(pa.compute.equal(mix.test.column("benchmark"), "openbookqa"))
    files = Counter(s.rsplit("/", 1)[1] for s in obqa.column("source").to_pylist())
    assert obqa.num_rows == 300 and set(files) == {"test.json", "dev.json"} and min(files.values()) > 120
    absr_train = mix.train.column("benchmark").to_pylist().count("absr")
    absr_test = mix.test.column("benchmark").to_pylist().count("absr")
    assert absr_train >= 150 and absr_train + absr_test == load_benchmark("absr", data_root).num_rows
    assert mix.train.column("benchmark").to_pylist().count("openbookqa") == 150
    assert not set(mix.train.column("id").to_pylist()) & set(mix.test.column("id").to_pylist())


def test_per_benchmark_settings_must_name_a_benchmark_of_the_mix(data_root):
    from kale_ray.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="per_benchmark"):
        load_config(overrides=["data.benchmark=arc-easy", "data.per_benchmark={absr: {limit_test: 3}}"])
