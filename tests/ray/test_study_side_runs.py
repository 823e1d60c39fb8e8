"""The study's side runs on real data: the paths stage on MetaQA over the MetaQA KB (path statistics)
and an evaluation outside the training mix (BBH by generation, the real model), both shown on the page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kale_ray.config import load_config
from kale_ray.study.report import collect, path_stats, render
from kale_ray.study.side_runs import run_eval_runs, run_path_runs
from kale_ray.study.variants import extra_dir

pytestmark = pytest.mark.ray


def test_side_runs_write_what_the_page_shows(ray_local, data_root: Path, smollm2_path: Path, tmp_path: Path):
    title, bbh = "MetaQA 1-hop", "BBH navigate"
    cfg = load_config(None, [
        f"workdir={tmp_path}", "run_name=st", f"data_root={data_root}", "study.variants={}",
        "paths.workers=1", "eval.engine=local", "paths.worker_cpus=0.5", "paths.batch_size=4",
        f"study.path_runs={{'{title}': {{benchmark: metaqa-1hop, kg_source: metaqa, limit: 6, max_hops: 1}}}}",
        f"study.eval_runs={{'{bbh}': {{benchmarks: [bbh-navigate], limit: 2, models: {{Vanilla: {smollm2_path}}}}}}}",
        f"study.results={tmp_path}/results.md", f"study.results_json={tmp_path}/results.json"])
    run_path_runs(cfg)
    stats = path_stats(extra_dir(cfg, "paths", title))
    assert (stats["kg"], stats["max_hops"], stats["rows"]) == ("metaqa", 1, 6)
    assert sum(stats["status"].values()) == 6 and stats["status"].get("ok", 0) >= 5  # 1-hop: topic -> answer
    assert set(stats["hops"]) == {"1"} and stats["shortest_hops"] == {"1": stats["status"]["ok"]}
    manifest = json.loads((extra_dir(cfg, "paths", title) / "manifest.json").read_text())
    run_path_runs(cfg)  # complete: skipped, the same artifact
    assert json.loads((extra_dir(cfg, "paths", title) / "manifest.json").read_text()) == manifest

    run_eval_runs(cfg)
    summary = json.loads((extra_dir(cfg, "eval", bbh) / "summary.json").read_text())
    assert summary["Vanilla"]["bbh-navigate"]["n"] == 2
    results = collect(cfg)
    assert results["extra"][bbh]["summary"] == summary and results["path_stats"][title]["rows"] == 6
    render(results, tmp_path / "results.md", tmp_path / "results.json", None)
    page = (tmp_path / "results.md").read_text()
    assert f"## {bbh}" in page and f"| {title} | metaqa | 1 | 6 |" in page
