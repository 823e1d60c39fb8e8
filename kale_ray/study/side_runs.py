"""The study's side runs, after its variants: path statistics of the paths stage on other benchmarks
and KGs, and evaluations outside the training mix."""

from __future__ import annotations

from typing import Any

from kale_ray.methods import VANILLA, RunId
from kale_ray.study.variants import extra_dir


def run_path_runs(cfg: Any) -> None:
    from kale_ray.data.benchmarks import load_benchmark
    from kale_ray.data.split import take
    from kale_ray.kg.extract import run_paths_stage
    from kale_ray.kg.stage import build_kg, default_input
    from kale_ray.ray_utils import init_ray

    init_ray(cfg.ray)
    for title, spec in cfg.study.path_runs.items():
        kg_cfg = cfg.kg.model_copy(update={"source": spec.kg_source, "input": spec.kg_input})
        paths_cfg = cfg.paths.model_copy(update={"max_hops": spec.max_hops or cfg.paths.max_hops})
        run_cfg = cfg.model_copy(update={"kg": kg_cfg, "paths": paths_cfg})
        kg_dir = build_kg(spec.kg_source, default_input(run_cfg), extra_dir(cfg, "kg", spec.kg_source))
        rows = load_benchmark(spec.benchmark, cfg.data_root, split=cfg.data.source_split)
        print(f"study: paths run {title!r}: {spec.benchmark}, {spec.limit or rows.num_rows} rows", flush=True)
        run_paths_stage(run_cfg, take(rows, spec.limit, cfg.data.sample_seed), kg_dir,
                        extra_dir(cfg, "paths", title))


def run_eval_runs(cfg: Any) -> None:
    from kale_ray.eval.run import run_eval

    for title, spec in cfg.study.eval_runs.items():
        eval_cfg = cfg.eval.model_copy(update={"benchmarks": spec.benchmarks, "limit": spec.limit,
                                               "known_incorrect": False, "test_split": None})
        models = spec.models or {RunId(VANILLA).label: cfg.model.name_or_path}
        print(f"study: eval run {title!r}: {', '.join(models)} on {', '.join(spec.benchmarks)}", flush=True)
        run_eval(cfg.model_copy(update={"eval": eval_cfg}), models, extra_dir(cfg, "eval", title))
