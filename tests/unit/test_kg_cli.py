"""`kale-ray kg build|paths|link` end to end through the CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

from kale_ray.cli import main


def test_build_then_paths_for_explicit_pairs(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    kb = tmp_path / "kb.txt"
    kb.write_text("Titanic|directed_by|James Cameron\nTitanic|release_year|1997\nAvatar|directed_by|James Cameron\n"
                  "Lonely|has_genre|Lonely\nbroken line\n")
    out = tmp_path / "kg"
    assert main(["kg", "build", "--source", "metaqa", "--input", str(kb), "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["triples"] == 4 and manifest["counts"]["skipped"] == 1
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("Avatar\t1997\nJames Cameron\tLonely\nNobody\t1997\nonly-one-field\nTitanic\tTitanic\n")
    result = tmp_path / "paths.jsonl"
    assert main(["kg", "paths", "--kg", str(out), "--pairs", str(pairs), "--out", str(result),
                 "paths.max_hops=3"]) == 0
    records = [json.loads(line) for line in result.read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok", "no_path", "unknown_entity", "malformed", "ok"]
    assert records[0]["paths"] == [[["Avatar", "directed_by", "James Cameron", False],
                                    ["James Cameron", "directed_by", "Titanic", True],
                                    ["Titanic", "release_year", "1997", False]]]
    assert records[0]["lengths"] == [3] and records[0]["nodes_expanded"] >= 2 and records[0]["seconds"] >= 0
    assert records[2]["error"] == "not in the KG: Nobody"
    assert records[4]["paths"] == [[]]
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["pairs"] == {
        "ok": 2, "no_path": 1, "unknown_entity": 1, "malformed": 1}
    # With a hop limit of 2 the only path (3 hops) is out of reach.
    assert main(["kg", "paths", "--kg", str(out), "--pairs", str(pairs), "--out", str(result),
                 "paths.max_hops=2"]) == 0
    assert json.loads(result.read_text().splitlines()[0])["status"] == "no_path"


def test_link_reports_coverage(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    kb = tmp_path / "kb.txt"
    kb.write_text("Kismet|directed_by|William Dieterle\n")
    bench = tmp_path / "qa.jsonl"
    bench.write_text(json.dumps({"question": "who directed [Kismet]", "answers": ["William Dieterle"],
                                 "topic": "Kismet"}) + "\n" +
                     json.dumps({"question": "who wrote [Nothing]", "answers": ["Nobody"], "topic": "Nothing"}) + "\n")
    out = tmp_path / "kg"
    assert main(["kg", "build", "--source", "metaqa", "--input", str(kb), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["kg", "link", "--kg", str(out), "--benchmark", str(bench), "--show", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {"qa": {"rows": 2, "with_q_entity": 1, "with_a_entity": 1, "linked": 1,
                             "with_q_entity_share": 0.5, "with_a_entity_share": 0.5, "linked_share": 0.5}}


def test_build_reports_a_missing_input(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    assert main(["kg", "build", "--source", "metaqa", "--input", str(tmp_path / "nope.txt"),
                 "--out", str(tmp_path / "kg")]) == 2
    assert "does not exist" in capsys.readouterr().err
