"""The study's results page: collect every number from the variants' artifacts into one JSON file
(each number next to the file it came from), then render markdown tables and a chart from that JSON.

Collect and render are separate so the page can be re-rendered from the committed JSON on a machine
without the artifacts, and so a test can render a hand-built study without training anything.

Eval names a model by its run's label ("KALE [seed 1]"); collect records, per variant, which run
(`kale_ray.methods.RunId`: method, seed, variant) each label is, and the page groups seeds into rows
from that record.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

from kale_ray.artifacts import atomic_write_bytes, atomic_write_json, atomic_write_text
from kale_ray.methods import METHODS, VANILLA, RunId, label, pipeline_runs
from kale_ray.study.precheck import precheck_lines

ORDER = [m.label for m in METHODS.values()]
# What each arm that changes one choice of KALE's loss isolates, against KALE in the same variant.
ARM_CHANGES = {"ka-frozen": "the target: the initial model's q (frozen) against the live one",
               "ka-forward": "the KL's direction: forward KL(q||p) against the printed reverse KL(p||q)",
               "ka-ce": "an added cross-entropy on the plain answer (weight 1)"}


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _train_runs(train_dir: Path) -> dict[str, Any]:
    """Per training run: median seconds and tokens/s of its steps (the first step, which pays for
    warm-up, is left out when there are others)."""
    runs: dict[str, Any] = {}
    for metrics in sorted(train_dir.glob("*/metrics.jsonl")):
        steps = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        steps = [s for s in steps if "step_s" in s]
        timed = steps[1:] or steps
        if not timed:
            continue
        manifest = _read_json(metrics.parent / "manifest.json") or {}
        counts = manifest.get("counts", {})
        runs[metrics.parent.name] = {
            "source": str(metrics), "steps": len(steps),
            "optimizer_steps": counts.get("optimizer_steps", counts.get("steps")), "rows_used": counts.get("rows_used"),
            "rows_in": counts.get("rows_in"), "row_ids_sha256": (manifest.get("inputs") or {}).get("row_ids_sha256"),
            "rows": (manifest.get("inputs") or {}).get("rows"),
            "step_s_median": statistics.median(s["step_s"] for s in timed),
            "tokens_per_s_median": statistics.median(s["tokens_per_s"] for s in timed),
            "first_loss": steps[0].get("loss"), "last_loss": steps[-1].get("loss")}
    return runs


def _finished_pairs(results: Path) -> dict[str, Any]:
    """An eval still running has no summary.json yet, but every (method, benchmark) pair it finished
    is already written whole: use those, and say the variant is partial."""
    summary: dict[str, dict[str, Any]] = {}
    for metrics in sorted(results.glob("*/*/metrics.json")):
        summary.setdefault(metrics.parent.parent.name, {})[metrics.parent.name] = _read_json(metrics)["metrics"]
    return {"source": str(results / "*/*/metrics.json"), "summary": summary, "partial": True}


def item_scores(results: Path) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Per-item correctness of every scored model, from its predictions.jsonl, compact enough for the
    committed JSON (kale_ray.study.committed.item_strings)."""
    from kale_ray.study.committed import item_rows, item_strings

    return item_strings(item_rows(results))


def collect_variant(run_dir: Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    out: dict[str, Any] = {"run_dir": str(run_dir)}
    summary = run_dir / "results" / "summary.json"
    out["eval"] = {"source": str(summary), "summary": _read_json(summary)} if summary.is_file() \
        else _finished_pairs(run_dir / "results")
    pipeline = run_dir / "pipeline.json"
    record = _read_json(pipeline) or {}
    out["stages"] = {"source": str(pipeline),
                     "seconds": {k: v["seconds"] for k, v in record.get("stages", {}).items()}}
    for stage in ("paths", "synth", "synth-noki", "paths-test"):
        manifest = _read_json(run_dir / stage / "manifest.json")
        if manifest:
            out[stage] = {"source": str(run_dir / stage / "manifest.json"), "counts": manifest.get("counts", {}),
                          "extra": {k: v for k, v in manifest.get("extra", {}).items()
                                    if k in ("linking_coverage", "seconds", "search_seconds", "last_run",
                                             "select", "degenerate")}}
    if (run_dir / "paths" / "manifest.json").is_file():
        out["path_stats"] = path_stats(run_dir / "paths")
    probe = run_dir / "results" / "probe" / "results.json"
    if probe.is_file():
        record = _read_json(probe)
        out["probe"] = {"source": str(probe), "best_layer": record.get("best_layer"),
                        "label_balance": record.get("label_balance"),
                        "auroc_by_layer": {k: v.get("auroc") for k, v in record.get("layers", {}).items()}}
    out["train"] = _train_runs(run_dir / "train")
    out["item_ids"], out["items"] = item_scores(run_dir / "results")
    return out


def path_stats(paths_dir: Path) -> dict[str, Any]:
    """What the KI search found, per row of a paths artifact: coverage, paths per row, the hop count of
    every returned path and of each row's shortest one, and the search cost (from the parquet parts, so
    the distribution is exact, not re-derived from the manifest's totals)."""
    from collections import Counter

    from kale_ray.artifacts import existing_parts, read_parts

    manifest = _read_json(Path(paths_dir) / "manifest.json") or {}
    columns = ["paths", "path_status", "nodes_expanded", "search_seconds"]
    rows = read_parts(paths_dir).select(columns).to_pylist() if existing_parts(paths_dir) else []
    found = [json.loads(r["paths"]) for r in rows if r["path_status"] == "ok"]
    hops = Counter(str(len(path)) for paths in found for path in paths)
    shortest = Counter(str(min(len(p) for p in paths)) for paths in found)
    status = dict(Counter(r["path_status"] for r in rows))
    n = len(rows)
    return {"source": str(Path(paths_dir) / "part-*.parquet"), "kg": (manifest.get("config") or {}).get("kg", {}).get("source"),
            "max_hops": (manifest.get("config") or {}).get("paths", {}).get("max_hops"),
            "rows": n, "status": status, "paths_per_row_with_path": statistics.fmean(len(p) for p in found) if found else None,
            "hops": dict(sorted(hops.items())), "shortest_hops": dict(sorted(shortest.items())),
            "search_ms_per_row": 1e3 * statistics.fmean(r["search_seconds"] for r in rows) if n else None,
            "search_ms_median": 1e3 * statistics.median(r["search_seconds"] for r in rows) if n else None,
            "nodes_expanded_per_row": statistics.fmean(r["nodes_expanded"] for r in rows) if n else None}


def collect(cfg: Any) -> dict[str, Any]:
    from kale_ray.study.variants import extra_dir, variant_config, variant_dirs

    dirs = variant_dirs(cfg)
    variants = {}
    for name, run_dir in dirs.items():
        vcfg = variant_config(cfg, name)
        runs = pipeline_runs(vcfg.train.methods, vcfg.train.seeds, vcfg.eval.vanilla, variant=name)
        variants[name] = {"overrides": cfg.study.variants[name], "synth_backend": vcfg.synth.backend,
                          "synth_select": vcfg.synth.select, "runs": {r.label: r.as_dict() for r in runs},
                          **collect_variant(run_dir)}
    dirs = {**{t: extra_dir(cfg, "eval", t) for t in cfg.study.eval_runs}, **cfg.study.extra_results}
    extra = {title: {"source": str(Path(d) / "summary.json"), "summary": _read_json(Path(d) / "summary.json")}
             for title, d in dirs.items()}
    paths = {title: path_stats(d) for title, d in ((t, extra_dir(cfg, "paths", t)) for t in cfg.study.path_runs)
             if (d / "manifest.json").is_file()}
    train = cfg.train
    precheck = _read_json(Path(cfg.study.precheck))
    return {"study": cfg.run_name, "extra": extra, "precheck": precheck, "path_stats": paths, "model": cfg.model.name_or_path,
            "data": cfg.data.model_dump(mode="json"), "train": {
                "methods": list(train.methods), "seeds": list(train.seeds), "workers": train.workers,
                "micro_batch_size": train.micro_batch_size, "grad_accum": train.grad_accum,
                "epochs": train.epochs, "max_steps": train.max_steps, "lora": train.lora.enabled,
                "zero_stage": train.zero_stage, "lr": train.optim.lr},
            "variants": variants}


# ---------------------------------------------------------------------------------------------- render

def _shown_variant(results: dict[str, Any], variant: str) -> str | None:
    """The variant a row names: none for the first variant's rows, which keep the plain method names."""
    return None if variant == next(iter(results["variants"])) else variant


def method_rows(results: dict[str, Any]) -> dict[str, dict[str, dict[str, list[dict[str, Any]]]]]:
    """row name -> benchmark -> list of per-seed metrics. A variant other than the first names its rows
    "KALE · <variant>"; the first variant's rows keep the plain method names."""
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for variant, data in results["variants"].items():
        _add_rows(rows, (data.get("eval") or {}).get("summary") or {}, data.get("runs") or {},
                  _shown_variant(results, variant))
    order = {n: k for k, n in enumerate(ORDER)}
    return dict(sorted(rows.items(), key=lambda kv: (kv[0] not in order, order.get(kv[0], 0))))


def _add_rows(rows: dict[str, Any], summary: dict[str, Any], runs: dict[str, Any] | None = None,
              variant: str | None = None) -> dict[str, Any]:
    """Each label's metrics under its run's row, with the run's seed. The run is the one collect
    recorded for the label; results collected before runs were recorded, and side runs, fall back to the
    registry's reading of the label, and a label outside it is a row of its own, without a seed."""
    for name, per_bench in summary.items():
        run = RunId.from_dict(runs[name]) if runs and name in runs else RunId.from_label(name)
        if run is not None:
            row, seed = replace(run, variant=variant).row, run.seed
        else:
            row, seed = (name if variant is None else f"{name} · {variant}"), None
        for bench, metrics in per_bench.items():
            rows.setdefault(row, {}).setdefault(bench, []).append({**metrics, "seed": seed})
    return rows


def row_name(results: dict[str, Any], variant: str, method: str) -> str:
    """The page's row name of a registered method in a variant (the first variant's rows carry no suffix)."""
    return RunId(method, variant=_shown_variant(results, variant)).row  # type: ignore[arg-type]


def _mean_sd(values: list[float]) -> tuple[float, float, int]:
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan"), 0
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)


def _fmt(values: list[float], scale: float = 100.0) -> str:
    mean, sd, n = _mean_sd(values)
    if n == 0:
        return "-"
    return f"{scale * mean:.1f}" if n == 1 else f"{scale * mean:.1f} ± {scale * sd:.1f}"


def _benchmarks(rows: dict[str, dict[str, list[dict[str, Any]]]]) -> list[str]:
    seen: list[str] = []
    for per_bench in rows.values():
        seen.extend(b for b in per_bench if b not in seen)
    return seen


def _per_seed_average(per_bench: dict[str, list[dict[str, Any]]], benches: list[str], key: str) -> list[float]:
    """Macro average over benchmarks, one value per seed scored on every benchmark."""
    return list(_seed_averages(per_bench, benches, key).values())


def accuracy_table(rows: dict[str, Any], key: str) -> str:
    benches = _benchmarks(rows)
    lines = ["| method | " + " | ".join(benches) + " | Avg |", "|---|" + "---|" * (len(benches) + 1)]
    for name, per_bench in rows.items():
        cells = [_fmt([m.get(key) for m in per_bench.get(b, [])]) for b in benches]
        avg = _fmt(_per_seed_average(per_bench, benches, key)) if all(b in per_bench for b in benches) else "-"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {avg} |")
    return "\n".join(lines)


def known_table(rows: dict[str, Any]) -> str:
    """known&incorrect (kale_ray.eval.known) per method: counts pooled over every benchmark of a run,
    then mean ± sd over seeds. Beside it, the reference line 1 - accuracy on the covered items: where
    known&incorrect sits below it, knowing the key fact goes with answering correctly."""
    lines = ["| method | items with a key fact / items (coverage) | known (% of covered) | known&incorrect "
             "(% of known) | reference: 1 - accuracy on covered |", "|---|---|---|---|---|"]
    for name, per_bench in rows.items():
        runs = min(len(v) for v in per_bench.values())
        shares: dict[str, list[float]] = {"known_share": [], "known_incorrect": [], "reference": []}
        counts: list[tuple[int, int]] = []
        for i in range(runs):
            known = [k for b in per_bench if (k := per_bench[b][i].get("known")) and k.get("covered") is not None]
            items, covered = sum(k["items"] for k in known), sum(k["covered"] for k in known)
            if not covered:
                continue
            n_known = sum(k["known"] for k in known)
            wrong = sum(k["incorrect_covered"] for k in known)
            counts.append((covered, items))
            shares["known_share"].append(n_known / covered)
            shares["reference"].append(wrong / covered)
            if n_known:
                shares["known_incorrect"].append(sum(k["known_incorrect_items"] for k in known) / n_known)
        if counts:
            covered, items = counts[0]
            lines.append(f"| {name} | {covered} / {items} ({_pct(covered, items)}) | " +
                         " | ".join(_fmt(shares[s]) for s in shares) + " |")
    return "\n".join(lines)


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def cost_table(results: dict[str, Any]) -> str:
    lines = ["| variant | writer | training rows | Q and A entity linked | with >= 1 path | search s per row (mean) | "
             "rationale tokens (KI / no KI) | rationale tokens/s | s/step SFT | s/step KALE | KALE / SFT |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for variant, data in results["variants"].items():
        paths = data.get("paths") or {}
        counts = paths.get("counts", {})
        cov = paths.get("extra", {}).get("linking_coverage", {})
        rows = counts.get("rows", 0)
        linked = sum(c.get("linked", 0) for c in cov.values())
        search = paths.get("extra", {}).get("search_seconds")
        synth = data.get("synth") or {}
        noki = data.get("synth-noki") or {}
        tokens = " / ".join(str(s.get("counts", {}).get("tokens", "-")) for s in (synth, noki))
        rates = [s.get("extra", {}).get("last_run", {}).get("tokens_per_s") for s in (synth, noki)]
        rate = " / ".join("-" if r is None else f"{r:.1f}" for r in rates)
        runs = {n: RunId.from_dir_name(n) for n in data.get("train", {})}
        step = {m: [r["step_s_median"] for n, r in data.get("train", {}).items() if runs[n] and runs[n].method == m]
                for m in ("sft", "ka")}
        sft, ka = (statistics.fmean(step[m]) if step[m] else None for m in ("sft", "ka"))
        lines.append(" | ".join([
            f"| {variant}", data.get("synth_backend", "-"), str(rows or "-"), _pct(linked, rows),
            _pct(counts.get("with_path", 0), rows), f"{search / rows:.3f}" if rows and search is not None else "-",
            tokens, rate, f"{sft:.2f}" if sft else "-", f"{ka:.2f}" if ka else "-",
            f"{ka / sft:.2f}" if sft and ka else "-"]) + " |")
    return "\n".join(lines)


def stage_table(results: dict[str, Any]) -> str:
    stages: list[str] = []
    for data in results["variants"].values():
        stages.extend(s for s in data["stages"]["seconds"] if s not in stages)
    lines = ["| stage | " + " | ".join(results["variants"]) + " |", "|---|" + "---|" * len(results["variants"])]
    for stage in stages:
        cells = [data["stages"]["seconds"].get(stage) for data in results["variants"].values()]
        lines.append(f"| {stage} | " + " | ".join("-" if c is None else f"{c:.0f}" for c in cells) + " |")
    return "\n".join(lines)


def _seed_averages(per_bench: dict[str, list[dict[str, Any]]], benches: list[str], key: str) -> dict[Any, float]:
    """seed -> macro average over benchmarks, for the seeds scored on every benchmark."""
    by_seed: dict[Any, dict[str, float]] = {}
    for bench in benches:
        for m in per_bench.get(bench, []):
            if m.get(key) is not None:
                by_seed.setdefault(m.get("seed"), {})[bench] = m[key]
    return {seed: statistics.fmean(v.values()) for seed, v in by_seed.items() if len(v) == len(benches)}


def paired_table(rows: dict[str, Any], comparisons: list[tuple[str, str, str]], key: str = "accuracy") -> str:
    """A - B per seed (same seed = same LoRA init and data order), averaged over benchmarks: what one
    change of the recipe does, with the seed-to-seed spread of that difference beside it."""
    benches = _benchmarks(rows)
    lines = ["| comparison | what it isolates | A - B, average accuracy (points) | seeds paired | "
             "benchmarks where A > B |", "|---|---|---|---|---|"]
    for a, b, meaning in comparisons:
        if a not in rows or b not in rows:
            continue
        avg_a, avg_b = _seed_averages(rows[a], benches, key), _seed_averages(rows[b], benches, key)
        if list(avg_b) == [None]:  # an unseeded reference (Vanilla) pairs with every seed
            avg_b = dict.fromkeys(avg_a, avg_b[None])
        seeds = [s for s in avg_a if s in avg_b]
        if not seeds:
            continue
        diffs = [avg_a[s] - avg_b[s] for s in seeds]
        wins = sum(statistics.fmean(m[key] for m in rows[a][bench]) > statistics.fmean(m[key] for m in rows[b][bench])
                   for bench in benches if rows[a].get(bench) and rows[b].get(bench))
        lines.append(f"| {a} vs {b} | {meaning} | {_fmt(diffs)} | {len(seeds)} | {wins} of {len(benches)} |")
    return "\n".join(lines)


def comparisons(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The ablations the study can answer from the variants it ran."""
    names = list(results["variants"])
    if not names:
        return []
    first = names[0]
    kale = label("ka")
    out = [(kale, label("sft"), "the KALE recipe against plain fine-tuning on the same rows"),
           (kale, label(VANILLA), "KALE against the untrained model")]
    for v in names:
        backend = results["variants"][v].get("synth_backend")
        out.append((row_name(results, v, "ka"), row_name(results, v, "ka-noki"),
                    f"the KG paths, same writer ({backend})"))
    out.append((kale, label("ce-rationale"), "the KL objective against cross-entropy on the rationale data"))
    for method, meaning in ARM_CHANGES.items():
        out.append((label(method), kale, meaning))
    for v in names[1:]:
        data = results["variants"][v]
        if data.get("synth_select") == "probe":
            out.append((row_name(results, v, "ka"), kale, "the probe filter (synthesis on unknown rows only)"))
        elif data.get("synth_backend") != results["variants"][first].get("synth_backend"):
            for method in ("ka", "ka-noki"):
                out.append((row_name(results, v, method), label(method),
                            f"the writer: {data.get('synth_backend')} vs {results['variants'][first].get('synth_backend')}"))
        else:
            changes = [o for o in data.get("overrides", []) if not o.startswith(("train.methods", "eval."))]
            out.append((row_name(results, v, "ka"), kale, ", ".join(f"`{o}`" for o in changes) or f"variant {v}"))
    return out


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def _p(value: float) -> str:
    return f"{value:.3f}" if value >= 0.001 else "< 0.001"


def interval_section(results: dict[str, Any]) -> list[str]:
    """The primary contrasts (kale_ray.study.contrasts), one row each, acc and acc_norm, then the design's
    detectable difference; the seed spread is labelled as what it is."""
    from kale_ray.study.contrasts import METRICS, N_BOOT, PRIMARY, primary_contrasts

    records = primary_contrasts(results)
    named = ", ".join(name for name, *_ in PRIMARY)
    out = [f"Named before the results: {named}. Each pairs the two arms item by item on the same held-out "
           "items (correctness averaged over the seeds both arms ran); the interval is a paired bootstrap "
           f"over items, stratified by benchmark ({N_BOOT} replicates, seeded), of the difference pooled over "
           "items; p is the exact McNemar (sign) test, Holm-corrected over the contrasts tested.", ""]
    if not records:
        return [*out, "No primary contrast can be computed: the collection has no per-item predictions "
                      "for both arms of any of them (re-collect from the artifacts).", ""]
    for m in METRICS:
        out += [f"{m}:", "", "| contrast | A | B | items | seeds | A - B (points) [95% CI] | items A / B ahead | "
                "p | p (Holm) | detectable at 80% power (points) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in records if m in r):
            s = r[m]
            out.append("| " + " | ".join([
                r["name"], row_name(results, r["a"]["variant"], r["a"]["method"]),
                row_name(results, r["b"]["variant"], r["b"]["method"]), str(s["items"]),
                ", ".join(str(x) for x in r["seeds"]) if r["seeds"] else "not shared (each arm's mean)",
                f"{_points(s['diff'])} [{_points(s['low'])}, {_points(s['high'])}]",
                f"{s['a_ahead']} / {s['b_ahead']}", _p(s["p"]), _p(s["p_holm"]),
                f"{100 * s['detectable']:.1f}" if s.get("detectable") else "-"]) + " |")
        out.append("")
    acc = [r["acc"] for r in records if "acc" in r]
    if acc:
        out.pop()
        n = max(s["items"] for s in acc)
        psi = statistics.median(s["discordance"] for s in acc)
        from kale_ray.study.stats import detectable_difference

        mdd = detectable_difference(n, psi) if psi else None
        out += ["", f"Detectable difference of the design: with {n} paired items and the median discordance of "
                    f"one seed pair, {100 * psi:.1f}% of items, a two-sided exact test at alpha 0.05 detects "
                    f"{'-' if mdd is None else f'{100 * mdd:.1f}'} points of accuracy with 80% power (Connor's "
                    "approximation); a smaller true difference is likely to read as no difference."]
    out += ["", "Seed spread, reported apart: the ± after a mean elsewhere on this page is the standard "
                "deviation over training seeds (what a rerun moves), not an interval over items.", ""]
    return out


def arms_table(results: dict[str, Any]) -> str:
    """Rows and optimizer steps each trained arm used (from the train manifests), so arms that trained
    on different rows or for different steps are visible as such."""
    from kale_ray.study.contrasts import arm_sizes

    lines = ["| arm | seeds | training rows used | row set (ids hash) | optimizer steps |", "|---|---|---|---|---|"]
    shown = lambda values: ", ".join(str(v) for v in sorted(values, key=str)) if values - {None} else "-"  # noqa: E731
    arms = arm_sizes(results)
    for arm in arms:
        seeds = ", ".join("-" if s is None else str(s) for s in arm["seeds"])
        lines.append(f"| {row_name(results, arm['variant'], arm['method'])} | {seeds} | "
                     f"{shown(arm['rows_used'])} | {shown(arm['row_sets'])} | {shown(arm['steps'])} |")
    return "\n".join([*lines, "", *same_rows_lines(arms)])


def same_rows_lines(arms: list[dict[str, Any]]) -> list[str]:
    """Per variant, one sentence: whether its arms trained on one row set for one step count."""
    out = []
    for variant in dict.fromkeys(a["variant"] for a in arms):
        mine = [a for a in arms if a["variant"] == variant]
        sets = set().union(*(a["row_sets"] for a in mine)) - {None}
        steps = set().union(*(a["steps"] for a in mine)) - {None}
        if not sets:
            out.append(f"- `{variant}`: the train manifests do not record the row ids (runs made before "
                       "they did): whether its arms shared rows is not known.")
        elif len(sets) == 1 and len(steps) == 1:
            out.append(f"- `{variant}`: every arm trained on the same rows (ids hash {next(iter(sets))}) for "
                       f"{next(iter(steps))} optimizer steps.")
        else:
            out.append(f"- `{variant}`: **the arms did not train on the same rows and steps** "
                       f"({len(sets)} row sets, steps {', '.join(str(s) for s in sorted(steps))}); a contrast "
                       "between them mixes the method with the data.")
    return out


def writer_table(results: dict[str, Any]) -> str:
    """Per variant and rationales artifact, the writer's degenerate-output rate (synth manifests): the
    share of what it wrote that the judge refused, and why; a degenerate row trains no arm."""
    lines = ["| variant | writer | rationales | written and judged | degenerate | rate | why |", "|---|---|---|---|---|---|---|"]
    for variant, data in results["variants"].items():
        for stage, title in (("synth", "KI (with paths)"), ("synth-noki", "w/o KI (Q&A only)")):
            record = ((data.get(stage) or {}).get("extra") or {}).get("degenerate")
            if not record:
                continue
            rate = "-" if record.get("rate") is None else f"{100 * record['rate']:.1f}%"
            why = ", ".join(f"{k} {n}" for k, n in (record.get("kinds") or {}).items()) or "-"
            lines.append(f"| {variant} | {data.get('synth_backend', '-')} | {title} | {record.get('judged')} | "
                         f"{record.get('degenerate')} | {rate} | {why} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def path_table(results: dict[str, Any]) -> str:
    sources = {f"variant `{v}` training rows": d["path_stats"] for v, d in results["variants"].items()
               if d.get("path_stats")}
    sources.update(results.get("path_stats") or {})
    lines = ["| rows searched | KG | hop limit | rows | >= 1 path | no path | no Q / no A entity | "
             "paths per row (with a path) | shortest path, hops: rows | all returned paths, hops: count | "
             "search ms per row, median / mean | paths expanded per row |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for title, st in sources.items():
        n, status = st["rows"], st["status"]
        hist = lambda h: ", ".join(f"{k}: {v}" for k, v in h.items()) or "-"  # noqa: E731
        per_row = st.get("paths_per_row_with_path")
        lines.append(" | ".join([
            f"| {title}", str(st.get("kg") or "-"), str(st.get("max_hops") or "-"), str(n),
            _pct(status.get("ok", 0), n), _pct(status.get("no_path", 0), n),
            f"{_pct(status.get('no_question_entity', 0), n)} / {_pct(status.get('no_answer_entity', 0), n)}",
            f"{per_row:.2f}" if per_row is not None else "-", hist(st["shortest_hops"]), hist(st["hops"]),
            f"{st['search_ms_median']:.3f} / {st['search_ms_per_row']:.3f}" if st.get("search_ms_median") is not None else "-",
            f"{st['nodes_expanded_per_row']:.1f}" if st.get("nodes_expanded_per_row") is not None else "-"]) + " |")
    return "\n".join(lines)


def probe_section(results: dict[str, Any], rows: dict[str, Any]) -> list[str]:
    """KA2L's filter against full synthesis: the work each did (from the synth manifests) and the
    accuracy each reached, same seeds."""
    variants = results["variants"]
    full = next((v for v, d in variants.items() if d.get("synth_select", "all") == "all" and d.get("synth")), None)
    out: list[str] = []
    for v, d in variants.items():
        if d.get("synth_select") != "probe" or not d.get("synth"):
            continue
        sel = d["synth"]["extra"].get("select", {})
        ref = (variants[full]["synth"]["extra"].get("select", {}) if full else {})
        out += [f"### Variant `{v}` against full synthesis (`{full}`)", "",
                f"The probe (layer {sel.get('layer')}) marked {sel.get('rows_skipped', 0)} of "
                f"{sel.get('rows_total', 0)} training rows known (P(known) >= {sel.get('p_known_cut', 0):.2f}); "
                "path search and rationale writing ran on the rest, and KALE trained on those rows only.", "",
                "| work | full synthesis | probe filter | saved |", "|---|---|---|---|"]
        for key, title in (("rows_selected", "training rows searched and written"), ("pairs_searched", "entity pairs searched"),
                           ("nodes_expanded", "paths expanded by A*"), ("rationale_tokens", "rationale tokens written")):
            a, b = ref.get(key), sel.get(key)
            saved = _pct(a - b, a) if a and b is not None else "-"
            out.append(f"| {title} | {a if a is not None else '-'} | {b if b is not None else '-'} | {saved} |")
        out.append("")
        probe = d.get("probe") or {}
        if probe.get("auroc_by_layer"):
            layers = sorted(probe["auroc_by_layer"], key=int)
            out += [f"Probe AUROC on the held-out rows by layer (best: {probe.get('best_layer')}; "
                    f"labels {json.dumps(probe.get('label_balance'), sort_keys=True)}):", "",
                    "| layer | " + " | ".join(layers) + " |", "|---|" + "---|" * len(layers),
                    "| AUROC | " + " | ".join(f"{probe['auroc_by_layer'][k]:.3f}" for k in layers) + " |", ""]
        out += [paired_table(rows, [(row_name(results, v, "ka"), row_name(results, full or v, "ka"),
                                     "the probe filter")]), ""]
    return out


def findings(rows: dict[str, Any]) -> list[str]:
    """Differences of average accuracy against SFT and Vanilla, with the seed spread; computed, not written."""
    benches = _benchmarks(rows)
    avg = {n: _mean_sd(_per_seed_average(pb, benches, "accuracy")) for n, pb in rows.items()
           if all(b in pb for b in benches)}
    out = []
    vanilla = label(VANILLA)
    for ref in (label("sft"), vanilla):
        if ref not in avg:
            continue
        for name, (mean, sd, n) in avg.items():
            if name in (ref, vanilla) or not n:
                continue
            wins = sum(statistics.fmean(m["accuracy"] for m in rows[name][b]) >
                       statistics.fmean(m["accuracy"] for m in rows[ref][b]) for b in benches)
            out.append(f"- {name} vs {ref}: {100 * (mean - avg[ref][0]):+.1f} points average accuracy "
                       f"(seed sd {100 * sd:.1f}); higher on {wins} of {len(benches)} benchmarks.")
    return out


def chart(rows: dict[str, Any], path: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = _benchmarks(rows)
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(benches)), 4.5))
    width = 0.8 / max(1, len(rows))
    for i, (name, per_bench) in enumerate(rows.items()):
        stats = [_mean_sd([m["accuracy"] for m in per_bench.get(b, [])]) for b in benches]
        ax.bar([j + i * width for j in range(len(benches))], [100 * s[0] for s in stats], width,
               yerr=[100 * s[1] for s in stats], capsize=2, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(benches))], benches, rotation=20)
    ax.set_ylabel("accuracy, held-out test split (%)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _setup(results: dict[str, Any], rows: dict[str, Any]) -> list[str]:
    data, train = results["data"], results["train"]
    benches = data["benchmark"] if isinstance(data["benchmark"], list) else [data["benchmark"]]
    first = next(iter(rows.values()), {})
    n_test = {b: runs[0].get("n") for b, runs in first.items()}
    variants = "; ".join(f"`{v}`: {' '.join(d['overrides']) or '(the config as it is)'}"
                         for v, d in results["variants"].items())
    return [
        f"- Model: `{results['model']}`, {'LoRA' if train['lora'] else 'full fine-tuning'}, "
        f"DeepSpeed ZeRO-{train['zero_stage']}, {train['workers']} Ray Train workers.",
        f"- Benchmarks: {', '.join(benches)}; each split on its own by row-id hash "
        f"(test_fraction {data['test_fraction']}, split_seed {data['split_seed']}, from the `{data['source_split']}` "
        f"files), at most {data['limit_train']} training and {data['limit_test']} test rows each"
        + (f" (a seeded sample, sample_seed {data['sample_seed']}, stratified by MMLU subject and file"
           + "".join(f"; {b}: {json.dumps(o, sort_keys=True)}" for b, o in (data.get("per_benchmark") or {}).items())
           + ")" if "sample_seed" in data else " (the first rows of each file)") + ". "
        f"Test items scored per benchmark: {', '.join(f'{b} {n}' for b, n in n_test.items())}.",
        "- Every figure is on the held-out test rows; no model saw them in training.",
        *[f"- **Variant `{v}` has not run yet** (no evaluation results in `{d['run_dir']}`)."
          for v, d in results["variants"].items() if not (d.get("eval") or {}).get("summary")],
        *[f"- **Variant `{v}` is partial**: its evaluation had not finished; only the finished (method, "
          "benchmark) pairs are shown, and an average needs every benchmark."
          for v, d in results["variants"].items() if (d.get("eval") or {}).get("partial")
          and (d.get("eval") or {}).get("summary")],
        f"- Methods trained: {', '.join(train['methods'])}; seeds {train['seeds'] or 'one (the global seed)'} "
        f"(seed = LoRA init and data order; the split is the same for all).",
        f"- Variants (each a full pipeline run): {variants}.",
    ]


def render(results: dict[str, Any], out_md: Path, numbers: Path, discussion: Path | None = None) -> None:
    rows = method_rows(results)
    png = out_md.with_suffix(".png")
    chart(rows, png)
    parts = [
        "# KALE at small scale: results",
        "",
        "Generated by `kale-ray study report` from the study's artifacts (numbers and their source files: "
        f"`{numbers.name}`). Do not edit by hand; the discussion comes from "
        f"`{discussion.name if discussion else '-'}`.",
        "",
        "## Setup",
        *_setup(results, rows),
        "",
        "## Accuracy (%), mean ± sd over seeds",
        "",
        accuracy_table(rows, "accuracy"),
        "",
        f"![accuracy by benchmark]({png.name})",
        "",
        "## acc_norm (%), mean ± sd over seeds",
        "",
        accuracy_table(rows, "acc_norm"),
        "",
        "## known&incorrect (key-fact questions, pooled over benchmarks)",
        "",
        "An item's key fact is the last edge of its shortest KG path (the paths-test stage), asked as a "
        "direct question (\"Complete the fact: <subject> <relation> ___.\") with the answer entity among "
        "three other entities in the same role of the same relation; the model knows it when acc_norm "
        "picks the answer. known&incorrect: of the known items, the share answered wrongly; the reference "
        "line is 1 - accuracy on the covered items.",
        "",
        known_table(rows),
        "",
        "## Coverage and cost",
        "",
        cost_table(results),
        "",
        "Wall time per stage (s):",
        "",
        stage_table(results),
        "",
        "## Primary contrasts, paired over items (95% intervals)",
        "",
        *interval_section(results),
        "Rows and optimizer steps per arm:",
        "",
        arms_table(results),
        "",
        *(["Degenerate rationales per writer (a degenerate row trains no arm):", "", writer_table(results), ""]
          if writer_table(results) else []),
        "## Pre-check: does each KA arm lower the plain view's CE on the gold answer?",
        "",
        *precheck_lines(results.get("precheck")),
        "",
        "## What the numbers say (computed)",
        "",
        *findings(rows),
        "",
        "One change at a time, paired by seed (mean ± sd over seeds: the seed spread, not an interval):",
        "",
        paired_table(rows, comparisons(results)),
        "",
        "## KG paths",
        "",
        path_table(results),
        "",
    ]
    probe = probe_section(results, rows)
    if probe:
        parts += ["## The knowledge probe as a synthesis filter (KA2L)", "", *probe]
    for title, extra in (results.get("extra") or {}).items():
        if extra.get("summary"):
            parts += [f"## {title}", "", f"From `{extra['source']}`.", "",
                      accuracy_table(_add_rows({}, extra["summary"]), "accuracy"), ""]
    if discussion is not None and discussion.is_file():
        parts += [discussion.read_text().strip(), ""]
    atomic_write_text(out_md, "\n".join(parts))


def committed_folder(cfg: Any) -> Path:
    """Where the study's committed results live: `study.committed`, else `study/` beside the page."""
    return Path(cfg.study.committed) if cfg.study.committed is not None else Path(cfg.study.results).parent / "study"


def collect_committed(cfg: Any) -> dict[str, Any]:
    """Collect from the artifacts, merge into the committed folder (kale_ray.study.committed) and write
    it back, then return the collection as read back from the folder: the page is the same whether the
    artifacts are there or gone, and a run finished elsewhere extends it instead of replacing it."""
    from kale_ray.study import committed

    folder = committed_folder(cfg)
    changed = committed.verify(folder)
    if changed:
        raise ValueError(f"{folder}: {', '.join(changed)} no longer match its manifest.json (edited by hand or "
                         "half-copied?): restore them from git before collecting")
    fresh = collect(cfg)
    old_study, old_variants = committed.read(folder)
    variants: dict[str, Any] = {}
    for name in [*fresh["variants"], *(n for n in old_variants if n not in fresh["variants"])]:
        old, old_items = old_variants.get(name, (None, committed.ITEMS_SCHEMA.empty_table()))
        record = fresh["variants"].get(name)
        if record is None:  # a variant the config no longer lists: kept as committed
            variants[name] = (old, old_items)
            continue
        items = committed.item_rows(Path(record["run_dir"]) / "results")
        new = {k: v for k, v in record.items() if k not in ("items", "item_ids")}
        if (record.get("eval") or {}).get("summary"):  # the recipe of the results the artifacts hold
            from kale_ray.study.variants import variant_config

            new["recipe"] = committed.recipe_hash(variant_config(cfg, name))
        variants[name] = (committed.merge_variant(old, new), committed.merge_items(old_items, items))
    study = {k: v for k, v in fresh.items() if k != "variants"}
    if old_study:
        study["extra"] = {**(old_study.get("extra") or {}),
                          **{t: e for t, e in (fresh.get("extra") or {}).items() if e.get("summary")}}
        study["path_stats"] = {**(old_study.get("path_stats") or {}), **(fresh.get("path_stats") or {})}
    manifest = committed.write(folder, study, variants)
    print(f"study: committed results in {folder} ({manifest['bytes'] / 1024:.0f} KiB, "
          f"{len(manifest['files'])} files)", flush=True)
    study, variants = committed.read(folder)
    results = dict(study or {})
    results["variants"] = {}
    for name, (record, items) in variants.items():
        item_ids, strings = committed.item_strings(items)
        results["variants"][name] = {**record, "item_ids": item_ids, "items": strings}
    return results


def write_report(cfg: Any, from_json: Path | None = None) -> Path:
    """Collect from the artifacts merged with the committed results (or load an earlier collection)
    and render the page."""
    if from_json is not None:
        results = json.loads(Path(from_json).read_text())
    else:
        results = collect_committed(cfg)
        atomic_write_json(cfg.study.results_json, results)
    # The JSON is written with sorted keys; the page's first variant is the config's first.
    order = [n for n in cfg.study.variants if n in results["variants"]]
    order += [n for n in results["variants"] if n not in order]
    results["variants"] = {n: results["variants"][n] for n in order}
    render(results, Path(cfg.study.results), Path(cfg.study.results_json), cfg.study.discussion)
    print(f"study: results page {cfg.study.results} (numbers in {cfg.study.results_json})", flush=True)
    return Path(cfg.study.results)
