"""The synth stage on a local Ray cluster with the template writer, on real ARC-Easy rows: the artifact
of docs/architecture.md (artifacts), the no-path policy, and that a killed actor or a crashed driver loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pyarrow.parquet as pq
import pytest

from kale_ray.artifacts import Manifest, existing_parts, file_sha256, read_parts
from kale_ray.synth.stage import run_synth_stage
from tests.faults import KILL_SYNTH_ACTOR, arm, fired
from tests.synth_support import arc_rows, synth_config, write_paths_artifact

pytestmark = pytest.mark.ray

N = 24  # every 4th row has no path: 18 with a path, 6 without

CONTRACT = {"id", "benchmark", "question", "choices", "gold", "gold_text", "answers", "topic", "subject",
            "source", "q_entities", "a_entities", "paths", "path_texts", "path_status", "nodes_expanded",
            "search_seconds", "rationale", "prompt", "ki", "status", "error", "generator", "tokens"}


@pytest.fixture(scope="module")
def paths_dir(tmp_path_factory, data_root):
    return write_paths_artifact(tmp_path_factory.mktemp("paths"), arc_rows(data_root, N), parts=2)


def _check_one_row_per_input(out, paths_dir):
    table = read_parts(out)
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == N
    assert set(ids) == set(read_parts(paths_dir).column("id").to_pylist())
    return table


def test_template_stage_writes_the_contract_and_skips_when_complete(ray_local, tmp_path, data_root,
                                                                    paths_dir, capsys):
    cfg = synth_config(tmp_path, data_root)
    out = run_synth_stage(cfg, paths_dir, tmp_path / "synth")
    table = _check_one_row_per_input(out, paths_dir)
    assert CONTRACT <= set(table.column_names)
    manifest = Manifest.read(out)
    assert manifest.complete and manifest.counts["rows"] == N
    assert manifest.counts["ok"] == 18 and manifest.counts["no_rationale"] == 6 and manifest.counts["fallback"] == 0
    assert manifest.counts["with_path"] == 18 and manifest.counts["no_path"] == 6
    assert manifest.counts["error"] == manifest.counts["degenerate"] == manifest.counts["dropped"] == 0
    assert manifest.counts["generated"] == N and manifest.counts["tokens"] == sum(table.column("tokens").to_pylist())
    for row in table.to_pylist():
        assert row["ki"] == (row["path_status"] == "ok")
        assert row["status"] == ("ok" if row["ki"] else "no_rationale")
        assert (row["rationale"] is None) == (not row["ki"])  # the template verbalises paths, nothing else
        assert json.loads(row["generator"])["backend"] == "template"
    assert "synth:" in capsys.readouterr().out
    created = manifest.created_at
    run_synth_stage(cfg, paths_dir, out)
    assert "complete for this config, skipping" in capsys.readouterr().out
    assert Manifest.read(out).created_at == created


def test_rerun_generates_only_missing_rows(ray_local, tmp_path, data_root, paths_dir):
    cfg = synth_config(tmp_path, data_root, "synth.part_rows=8")
    out = run_synth_stage(cfg, paths_dir, tmp_path / "synth")
    parts = existing_parts(out)
    assert len(parts) >= 3
    lost = parts[1]
    lost_ids = set(pq.read_table(lost).column("id").to_pylist())
    kept = {i: file_sha256(p) for i, p in parts.items() if p != lost}
    lost.unlink()  # a part that never got written
    run_synth_stage(cfg, paths_dir, out)
    manifest = Manifest.read(out)
    assert manifest.counts["generated"] == len(lost_ids) and manifest.counts["reused"] == N - len(lost_ids)
    assert {i: file_sha256(p) for i, p in existing_parts(out).items() if i in kept} == kept
    _check_one_row_per_input(out, paths_dir)


def test_drop_policy_labels_and_counts_no_path_rows(ray_local, tmp_path, data_root, paths_dir):
    cfg = synth_config(tmp_path, data_root, "paths.no_path=drop")
    out = run_synth_stage(cfg, paths_dir, tmp_path / "synth")
    table = _check_one_row_per_input(out, paths_dir)
    counts = Manifest.read(out).counts
    assert counts["dropped"] == 6 and counts["ok"] == 18 and counts["no_rationale"] == 0 and counts["usable"] == 18
    dropped = [r for r in table.to_pylist() if r["status"] == "dropped"]
    assert all(r["rationale"] is None and r["path_status"] != "ok" for r in dropped)


def test_wo_ki_ablation_gives_no_paths_to_the_writer(ray_local, tmp_path, data_root, paths_dir, tiny_llama_path):
    """An LLM writer (the template writes from paths only and refuses the ablation): every row is
    written, none with the paths in its prompt."""
    cfg = synth_config(tmp_path, data_root, "synth.ki=false", "synth.backend=hf",
                       f"model.name_or_path={tiny_llama_path}", "synth.max_new_tokens=8")
    table = read_parts(run_synth_stage(cfg, paths_dir, tmp_path / "synth"))
    assert not any(table.column("ki").to_pylist())
    assert all("Facts that may help" not in p for p in table.column("prompt").to_pylist())
    counts = Manifest.read(tmp_path / "synth").counts
    assert counts["no_rationale"] == counts["error"] == 0 and counts["rows"] == N


def test_killed_actor_loses_nothing(ray_local, tmp_path, data_root, paths_dir, fault_dir):
    arm(fault_dir, KILL_SYNTH_ACTOR)
    cfg = synth_config(tmp_path, data_root, "synth.workers=2")
    out = run_synth_stage(cfg, paths_dir, tmp_path / "synth")
    pids = fired(fault_dir, KILL_SYNTH_ACTOR)  # an actor process really died mid-batch
    assert len(pids) == 1 and pids[0] != os.getpid()
    _check_one_row_per_input(out, paths_dir)
    counts = Manifest.read(out).counts
    assert counts["ok"] + counts["no_rationale"] == N


def test_crashed_driver_resumes_without_duplicates(ray_local, tmp_path, data_root, paths_dir):
    out = tmp_path / "synth"
    overrides = [f"workdir={tmp_path}", f"data_root={data_root}", "synth.worker_cpus=0.5",
                 "synth.batch_size=4", "synth.part_rows=4",
                 f"ray.address={ray_local.get_runtime_context().gcs_address}"]
    # The driver dies hard (no cleanup) right after writing its second part.
    script = textwrap.dedent(f"""
        import os
        from kale_ray.config import load_config
        from kale_ray.synth import stage
        flush = stage._PartWriter.flush
        def flush_then_die(self):
            flush(self)
            if self.written >= 2:
                os._exit(3)
        stage._PartWriter.flush = flush_then_die
        if __name__ == "__main__":
            stage.run_synth_stage(load_config(overrides={overrides!r}), {str(paths_dir)!r}, {str(out)!r})
    """)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    parts = existing_parts(out)
    assert len(parts) == 2 and Manifest.read(out) is None
    before = {i: file_sha256(p) for i, p in parts.items()}
    written = sum(pq.read_table(p).num_rows for p in parts.values())
    assert 0 < written < N
    from kale_ray.config import load_config

    run_synth_stage(load_config(overrides=overrides[:-1] + ["ray.num_cpus=2"]), paths_dir, out)
    manifest = Manifest.read(out)
    assert manifest.counts["generated"] == N - written and manifest.counts["reused"] == written
    assert {i: file_sha256(p) for i, p in existing_parts(out).items() if i in before} == before
    _check_one_row_per_input(out, paths_dir)


def test_changed_config_starts_over(ray_local, tmp_path, data_root, paths_dir, capsys):
    out = tmp_path / "synth"
    run_synth_stage(synth_config(tmp_path, data_root), paths_dir, out)
    run_synth_stage(synth_config(tmp_path, data_root, "synth.max_paths_in_prompt=1"), paths_dir, out)
    assert "another config; starting over" in capsys.readouterr().out
    assert Manifest.read(out).counts["generated"] == N
    _check_one_row_per_input(out, paths_dir)
    # how it runs (workers, batch size) is not what it writes: the artifact stays complete
    run_synth_stage(synth_config(tmp_path, data_root, "synth.max_paths_in_prompt=1", "synth.batch_size=2"),
                    paths_dir, out)
    assert "skipping" in capsys.readouterr().out
