"""Evaluation: score every method on every benchmark and write the results directory.

    out/
      <method>/<benchmark>/predictions.jsonl   one line per item (lls, predictions, correctness, known
                                               and the key-fact check behind it)
      <method>/<benchmark>/metrics.json        that pair's metrics; its `key` lets a re-run skip it
      summary.json  table.md  chart.png  manifest.json

A (method, benchmark) pair is written whole or not at all, so a re-run after a crash redoes only the
pairs that were missing; a pair is also redone when its model spec, eval config or items changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa

from kale_ray import storage
from kale_ray.artifacts import Manifest, atomic_write_json, atomic_write_text
from kale_ray.config import ConfigError
from kale_ray.data.answers import exact_match, extract_answer
from kale_ray.data.format import prompt_format
from kale_ray.eval.metrics import mc_scores
from kale_ray.progress import Progress

GEN_STOP = ["\n\n", "\nQuestion:"]


def load_items(cfg: Any, rows: pa.Table | None = None) -> dict[str, pa.Table]:
    """benchmark -> rows: the given table, the data stage's test split, or cfg.eval.benchmarks."""
    import pyarrow.parquet as pq

    from kale_ray.data.benchmarks import load_benchmark

    if rows is None and cfg.eval.test_split is not None:
        path = Path(cfg.eval.test_split)
        path = path / "test.parquet" if path.is_dir() else path
        storage.fetch(path)
        rows = pq.read_table(path)
    if rows is not None:
        names = list(dict.fromkeys(rows.column("benchmark").to_pylist()))
        tables = {n: rows.filter(pa.compute.equal(rows.column("benchmark"), n)) for n in names}
    else:
        tables = {}
        for name in cfg.eval.benchmarks:
            table = load_benchmark(name, cfg.data_root, cfg.eval.split)
            tables[Path(name).stem if Path(name).suffix else name] = table
    if cfg.eval.limit:
        from kale_ray.data.split import take

        tables = {n: take(t, cfg.eval.limit, cfg.data.sample_seed) for n, t in tables.items()}
    return tables


def is_generative(cfg: Any, benchmark: str, row: dict[str, Any]) -> bool:
    return row["gold"] < 0 or len(row["choices"]) < 2 or any(
        benchmark.startswith(p) for p in cfg.eval.generative)


def score_rows(scorer: Any, benchmark: str, rows: list[dict[str, Any]], cfg: Any,
               progress: Progress) -> list[dict[str, Any]]:
    chunk = max(cfg.eval.batch_size, 4 * cfg.eval.concurrency)
    fmt = prompt_format(cfg)  # the format the models were trained in (data.chat_template)
    out: list[dict[str, Any]] = []
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        mc = [r for r in part if not is_generative(cfg, benchmark, r)]
        gen = [r for r in part if is_generative(cfg, benchmark, r)]
        pairs = [(fmt.prompt(r["question"]), fmt.answer(c)) for r in mc for c in r["choices"]]
        lls = iter(scorer.loglikelihood(pairs))
        by_id: dict[str, dict[str, Any]] = {}
        for r in mc:
            scores = mc_scores([next(lls) for _ in r["choices"]], r["choices"], r["gold"])
            by_id[r["id"]] = {"type": "mc", **scores, "correct": scores["acc"]}
        texts = scorer.generate([fmt.prompt(r["question"]) for r in gen], cfg.eval.max_new_tokens, GEN_STOP)
        for r, text in zip(gen, texts, strict=True):
            extracted = extract_answer(text)
            em = exact_match(extracted, r["answers"] or [r["gold_text"]])
            by_id[r["id"]] = {"type": "generative", "generated": text, "extracted": extracted,
                              "exact_match": em, "correct": em}
        for r in part:
            out.append({"id": r["id"], "benchmark": benchmark, "question": r["question"], "choices": r["choices"],
                        "gold": r["gold"], "gold_text": r["gold_text"], **by_id[r["id"]]})
        progress.update(len(part), options=len(pairs))
    return out


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def pair_metrics(preds: list[dict[str, Any]]) -> dict[str, Any]:
    mc = [p for p in preds if p["type"] == "mc"]
    gen = [p for p in preds if p["type"] == "generative"]
    metrics: dict[str, Any] = {
        "n": len(preds), "n_mc": len(mc), "n_generative": len(gen),
        "accuracy": _mean([p["correct"] for p in preds]),
        "acc": _mean([p["acc"] for p in mc]), "acc_norm": _mean([p["acc_norm"] for p in mc]),
        "exact_match": _mean([p["exact_match"] for p in gen]),
    }
    if any("known" in p for p in preds):
        from kale_ray.eval.known import shares

        metrics["known"] = shares([p.get("known") for p in preds], [p["correct"] for p in preds])
    return metrics


def _pair_key(spec: str, cfg: Any, rows: list[dict[str, Any]], with_probes: bool | str) -> str:
    ids = hashlib.sha256("\n".join(r["id"] for r in rows).encode()).hexdigest()
    payload = {"spec": storage.remote_location(spec) or spec, "eval": cfg.eval.model_dump(mode="json", exclude={"concurrency", "limit"}),
               "dtype": cfg.model.dtype, "ids": ids, "probes": with_probes,
               **({"chat_template": True} if cfg.data.chat_template else {})}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_eval(cfg: Any, models: dict[str, str], out: Path, rows: pa.Table | None = None,
             probes: pa.Table | Path | None = None) -> Path:
    """Score each method's model (path, registered name or `http://host:port/v1#name`) on every
    benchmark; write predictions, metrics, summary.json, table.md and chart.png under `out`. `probes`
    (else `eval.probes`): a paths artifact (or its table, with `eval.kg` naming its KG) whose key facts
    known&incorrect asks each model."""
    from kale_ray.eval.known import facts_hash, known_checks, load_facts
    from kale_ray.eval.report import bar_chart, markdown_table
    from kale_ray.eval.scorers import open_scorer

    out = Path(out)
    tables = load_items(cfg, rows)
    # known&incorrect's key facts (kale_ray.eval.known), built once for every model: item id -> fact.
    facts: dict[str, dict[str, Any]] | None = None
    source = probes if probes is not None else cfg.eval.probes
    if cfg.eval.known_incorrect and cfg.eval.known_from == "fact" and source is not None:
        facts = load_facts(source, cfg.eval.kg, cfg.eval.known_distractors, cfg.seed)
        n_items = sum(t.num_rows for t in tables.values())
        n_covered = sum(1 for t in tables.values() for i in t.column("id").to_pylist() if i in facts)
        print(f"eval: known&incorrect: a key fact for {n_covered} of {n_items} items", flush=True)
    known_source: bool | str = facts_hash(facts) if facts is not None else False
    if cfg.eval.known_incorrect and cfg.eval.known_from == "probe":  # a retrained probe redoes the pairs
        from kale_ray.artifacts import file_sha256
        from kale_ray.probe.stage import probe_dir

        probe_file = probe_dir(cfg) / "probe.npz"
        storage.fetch(probe_file)
        known_source = file_sha256(probe_file) if probe_file.is_file() else "no probe"
    keys = {(m, b): _pair_key(spec, cfg, t.to_pylist(), known_source)
            for m, spec in models.items() for b, t in tables.items()}
    done = {pair for pair, key in keys.items() if _done_metrics(out, *pair, key) is not None}
    pending = {m: spec for m, spec in models.items() if any((m, b) not in done for b in tables)}
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    with _scoring_specs(cfg, pending) as (specs, scoring_nodes):
        for method, spec in models.items():
            summary[method] = {}
            scorer = None
            try:
                for bench, table in tables.items():
                    if (method, bench) in done:
                        summary[method][bench] = _done_metrics(out, method, bench, keys[method, bench])
                        print(f"eval: {method}/{bench} is complete, skipping", flush=True)
                        continue
                    items = table.to_pylist()
                    scorer = scorer or open_scorer(specs[method], cfg)
                    progress = Progress(f"eval {method}/{bench}", len(items), unit="items",
                                        metrics_path=out / "metrics.jsonl")
                    preds = score_rows(scorer, bench, items, cfg, progress)
                    flags = None
                    if cfg.eval.known_incorrect and cfg.eval.known_from == "probe":
                        from kale_ray.probe.uses import probe_known_flags

                        flags = probe_known_flags(scorer, items, cfg)
                    elif facts is not None:
                        checks = known_checks(scorer, items, facts, prompt_format(cfg))
                        flags = [None if c is None else c["known"] for c in checks]
                        for pred, check in zip(preds, checks, strict=True):
                            if check is not None:
                                pred["fact"] = check
                    if flags is not None:
                        for pred, flag in zip(preds, flags, strict=True):
                            pred["known"] = flag
                    progress.close()
                    metrics = pair_metrics(preds)
                    pair_dir = out / method / bench
                    atomic_write_text(pair_dir / "predictions.jsonl",
                                      "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in preds))
                    atomic_write_json(pair_dir / "metrics.json",
                                      {"key": keys[method, bench], "spec": spec, "metrics": metrics,
                                       "nodes": scoring_nodes})
                    summary[method][bench] = metrics
                    print(f"eval: {method}/{bench}: accuracy {metrics['accuracy']:.4f} on {metrics['n']} items",
                          flush=True)
            finally:
                if scorer is not None:
                    scorer.close()
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "table.md", markdown_table(summary))
    bar_chart(summary, out / "chart.png")
    Manifest(stage="eval", config_hash=_summary_hash(summary), config=cfg.eval.model_dump(mode="json"),
             inputs={"models": models, "benchmarks": list(tables)},
             counts={f"{m}/{b}": v["n"] for m, pb in summary.items() for b, v in pb.items()},
             extra={"nodes": sorted({n for m in summary for b in summary[m]
                                     for n in json.loads((out / m / b / "metrics.json").read_text()).get("nodes", [])})}
             ).write(out)
    print((out / "table.md").read_text(), flush=True)
    return out


def _done_metrics(out: Path, method: str, bench: str, key: str) -> dict[str, Any] | None:
    """A pair's metrics when an earlier run wrote them for the same key."""
    path = out / method / bench / "metrics.json"
    storage.fetch(path)
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record["metrics"] if record.get("key") == key else None


@contextmanager
def _scoring_specs(cfg: Any, models: dict[str, str]) -> Iterator[tuple[dict[str, str], list[str]]]:
    """method -> what `open_scorer` opens, and the nodes that score: with `eval.engine=serve`, models
    given as paths or names are deployed on Ray Serve for the stage (kale_ray.eval.served); `local`
    scores them in this process."""
    if cfg.eval.engine == "local" or not models:
        from kale_ray.ray_utils import this_node

        yield dict(models), [this_node()]
        return
    if cfg.eval.known_incorrect and cfg.eval.known_from == "probe":
        raise ConfigError("eval.known_from=probe reads the model's hidden states in process: "
                          "set eval.engine=local")
    from kale_ray.eval.served import serving

    with serving(cfg, models) as scoring:
        yield scoring


def _summary_hash(summary: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(summary, sort_keys=True).encode()).hexdigest()[:16]


def pipeline_models(cfg: Any) -> dict[str, str]:
    """Vanilla (the base model) plus every training run of the pipeline whose `final/` checkpoint exists."""
    from kale_ray.engines.registry import resolve_model_in_task
    from kale_ray.methods import VANILLA, RunId, trained_runs

    # The base as the pipeline's model stage names it (a prepared path): the same spec, the same pair keys.
    base = resolve_model_in_task(cfg.model.name_or_path, cfg.model.cache_dir, cfg.models_dir)
    models = {RunId(VANILLA).label: base} if cfg.eval.vanilla else {}
    for run in trained_runs(cfg.train.methods, cfg.train.seeds):
        final = cfg.stage_dir("train") / run.dir_name / "final"
        storage.fetch(final / "config.json")  # not the weights: the engines fetch those where they load
        if (final / "config.json").is_file():
            models[run.label] = str(final)
    return models


def run_eval_stage(cfg: Any, probes: Path | None = None, out: Path | None = None) -> Path:
    """The models of a config's run, as the pipeline left them: the data stage's held-out split (when it
    exists), the base model and every trained method, known&incorrect's key facts from the pipeline's
    paths-test stage (when it asks for them and the stage ran), results in `out` (default: the
    pipeline's `<run>/results`). So `jobs.evaluate --config FILE` scores exactly what the pipeline's eval
    stage scores, and finds the pairs it scored complete."""
    data_dir = cfg.stage_dir("data")
    rows = None
    storage.fetch(data_dir / "test.parquet")
    if cfg.eval.test_split is None and (data_dir / "test.parquet").is_file():
        import pyarrow.parquet as pq

        rows = pq.read_table(data_dir / "test.parquet")
    paths_test = cfg.stage_dir("paths-test")
    if probes is None and cfg.eval.probes is None and cfg.eval.known_incorrect and cfg.eval.known_from == "fact":
        manifest = Manifest.read(paths_test)
        probes = paths_test if manifest is not None and manifest.complete else None
    return run_eval(cfg, pipeline_models(cfg), out or cfg.stage_dir("results"), rows=rows, probes=probes)
