"""The paths stage on a real local Ray cluster: actor pool, resume, and a worker killed mid-stage."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kale_ray.artifacts import Manifest, existing_parts, read_parts
from kale_ray.config import load_config
from kale_ray.data.benchmarks import SCHEMA, load_benchmark
from kale_ray.kg.extract import run_paths_stage
from kale_ray.kg.stage import build_kg
from kale_ray.kg.store import load_kg
from tests.faults import KILL_PATHS_ACTOR, arm, fired

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def rows(data_root: Path) -> pa.Table:
    table = load_benchmark("metaqa-1hop", data_root, split="test")
    rows = table.slice(0, 30).to_pylist()
    rows.append({**rows[0], "id": "unlinkable", "question": "xyzzy [qqq zzz]", "topic": "qqq zzz"})
    rows.append({**rows[1], "id": "no-answer", "answers": ["zz no such answer zz"], "gold_text": "zz no such answer zz"})
    rows.append(rows[2])  # a duplicate id: kept once
    return pa.Table.from_pylist(rows, schema=SCHEMA)


@pytest.fixture(scope="module")
def metaqa_kg(data_root: Path, rows: pa.Table, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real MetaQA KB cut to the triples touching the rows' topics and answers (actors start fast)."""
    names = set(rows.column("topic").to_pylist()) | {a for ans in rows.column("answers").to_pylist() for a in ans}
    lines = [line for line in (data_root / "metaqa" / "kb.txt").read_text().splitlines()
             if line.split("|")[0] in names or line.split("|")[-1] in names]
    kb = tmp_path_factory.mktemp("kb") / "kb.txt"
    kb.write_text("\n".join(lines) + "\n")
    return build_kg("metaqa", kb, kb.parent / "kg")


def config(tmp_path: Path):  # noqa: ANN201
    return load_config(None, [f"workdir={tmp_path}", "paths.batch_size=4", "paths.workers=2",
                              "paths.worker_cpus=0.5", "paths.max_hops=1"])


def check_artifact(out: Path, rows: pa.Table, kg_dir: Path) -> pa.Table:
    table = read_parts(out)
    ids = Counter(table.column("id").to_pylist())
    assert set(ids) == set(rows.column("id").to_pylist()) and set(ids.values()) == {1}, "every row exactly once"
    assert table.schema.names[: len(SCHEMA)] == SCHEMA.names
    manifest = Manifest.read(out)
    assert manifest.complete and manifest.counts["rows"] == len(ids) and manifest.counts["duplicate_input_ids"] == 1
    kg = load_kg(kg_dir)
    stored = {kg.triple_keys(i) for i in range(kg.num_triples)}
    by_id = {r["id"]: r for r in table.to_pylist()}
    assert by_id["unlinkable"]["path_status"] == "no_question_entity"
    assert by_id["no-answer"]["path_status"] == "no_answer_entity"
    for row in by_id.values():
        paths = json.loads(row["paths"])
        assert (row["path_status"] == "ok") == bool(paths)
        assert len(row["path_texts"]) == len(paths)
        for path in paths:
            assert path[0][0] in row["q_entities"] and path[-1][2] in row["a_entities"]
            for head, rel, tail, backward in path:
                assert ((tail, rel, head) if backward else (head, rel, tail)) in stored
    assert manifest.counts["with_path"] >= 28  # real MetaQA 1-hop answers are one hop from the topic
    return table


def test_paths_stage_survives_a_killed_actor_and_resumes(ray_local, tmp_path: Path, rows: pa.Table,  # noqa: ANN001
                                                         metaqa_kg: Path, capsys, fault_dir) -> None:  # noqa: ANN001
    cfg = config(tmp_path)
    # the actor holding this row dies mid-stage
    marker = arm(fault_dir, KILL_PATHS_ACTOR, rows.column("id")[17].as_py())
    out = run_paths_stage(cfg, rows, metaqa_kg, tmp_path / "paths")
    assert not marker.exists() and fired(fault_dir, KILL_PATHS_ACTOR), "the actor really was killed"
    check_artifact(out, rows, metaqa_kg)
    coverage = Manifest.read(out).extra["linking_coverage"]["metaqa-1hop"]
    assert coverage["rows"] == 32 and coverage["linked"] == 30
    # Complete: a re-run skips. Lose two parts and the manifest's completion: only those rows are redone.
    run_paths_stage(cfg, rows, metaqa_kg, out)
    assert "complete for this config, skipping" in capsys.readouterr().out
    parts = existing_parts(out)
    lost = sum(pq.read_table(parts[i]).num_rows for i in (1, 3))
    parts[1].unlink()
    parts[3].unlink()
    manifest = Manifest.read(out)
    manifest.complete = False
    manifest.write(out)
    run_paths_stage(cfg.model_copy(update={"paths": cfg.paths.model_copy(update={"workers": 1})}),
                    rows, metaqa_kg, out)
    assert f"{32 - lost} already done, {lost} to run" in capsys.readouterr().out
    check_artifact(out, rows, metaqa_kg)
