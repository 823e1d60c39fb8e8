"""The pre-check, before the study's budget is spent: does each KA arm lower the plain view's
cross-entropy on the gold answer at all?

KA trains the plain view (no rationale) toward the with-rationale view, not toward the gold answer; if
the target view is poor, or drifts (a live target), an arm can lower its KA loss and still raise the
plain view's CE on the answer, which is what the test scores. So, on a few training rows and steps,
every KA arm of the study's first variant is trained on one shared row set (`train.rows=shared`: the
same rows and steps for every arm) and the plain view's CE on the gold answer is measured before
(the base model) and after (the trained arm), with the with-rationale view's CE and KL(p||q) beside it
to say why an arm that did not lower it did not. The result is a JSON file (`study.precheck`) that the
results page renders.

`kale-ray study precheck --config configs/study.yaml [--rows 64] [--steps 50]`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from kale_ray.artifacts import atomic_write_json
from kale_ray.methods import METHODS, label

ROWS = 64
STEPS = 50
CANDIDATES = 3  # training rows searched and written per pre-check row: some have no path, some degenerate


def ka_arms(methods: list[str]) -> list[str]:
    """The arms trained by the KA loss (KALE and its ablations), in the config's order."""
    return [m for m in methods if METHODS[m].trainer == "ka"]


def precheck_config(cfg: Any, variant: str | None, steps: int) -> Any:
    """The study's variant (default: its first) as the pre-check runs it: its own run name, one seed,
    `steps` optimizer steps, the arms on one shared row set, and only the KA arms."""
    from kale_ray.config import ConfigError, apply_overrides, build_config
    from kale_ray.study.variants import variant_config

    name = variant or next(iter(cfg.study.variants))
    if name not in cfg.study.variants:
        raise ConfigError(f"study precheck: unknown variant {name!r}; the config has {sorted(cfg.study.variants)}")
    vcfg = variant_config(cfg, name)
    arms = ka_arms(vcfg.train.methods)
    if not arms:
        raise ConfigError(f"study precheck: variant {name!r} trains no KA arm (train.methods={vcfg.train.methods})")
    tree = vcfg.model_dump(mode="json")
    tree = apply_overrides(tree, [f"run_name={cfg.run_name}-precheck", f"train.max_steps={steps}", "train.seeds=[]",
                                  "train.rows=shared", f"train.methods=[{', '.join(arms)}]", "synth.select=all"])
    return build_config(tree, f"study precheck of variant {name!r}"), name


def _sample(ids: list[str], n: int, seed: int) -> list[str]:
    """n ids of a seeded shuffle of the sorted ids: which rows does not depend on artifact order."""
    order = sorted(ids)
    random.Random(seed).shuffle(order)
    return sorted(order[:n])


def run_precheck(cfg: Any, rows: int = ROWS, steps: int = STEPS, variant: str | None = None,
                 out: Path | None = None) -> Path:
    """Train each KA arm on `rows` shared training rows for `steps` steps; write before/after answer
    views per arm to `out` (default `study.precheck`)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from kale_ray.data.stage import read_split, run_data_stage
    from kale_ray.engines.registry import resolve_model_in_task
    from kale_ray.kg.extract import run_paths_stage
    from kale_ray.kg.stage import run_kg_stage
    from kale_ray.ray_utils import init_ray
    from kale_ray.study.answer_views import answer_views_remote
    from kale_ray.synth.stage import run_synth_stage
    from kale_ray.train.rows import shared_row_ids
    from kale_ray.train.stage import TOKENS, run_train_stage

    pcfg, name = precheck_config(cfg, variant, steps)
    arms = list(pcfg.train.methods)
    init_ray(pcfg.ray)
    base = resolve_model_in_task(pcfg.model.name_or_path, pcfg.model.cache_dir, pcfg.models_dir)
    train = read_split(run_data_stage(pcfg), "train")
    picked = _sample(train.column("id").to_pylist(), CANDIDATES * rows, pcfg.seed)
    candidates = train.filter(pc.is_in(train.column("id"), value_set=pa.array(picked, pa.string())))
    kg_dir = run_kg_stage(pcfg)
    paths_dir = run_paths_stage(pcfg, candidates, kg_dir, pcfg.stage_dir("paths"))
    sources = {"synth": True} | ({"synth-noki": False} if any(METHODS[a].source == "synth-noki" for a in arms) else {})
    dirs = {}
    for stage, ki in sources.items():
        stage_cfg = pcfg.model_copy(update={"synth": pcfg.synth.model_copy(update={"ki": ki})})
        dirs[stage] = run_synth_stage(stage_cfg, paths_dir, pcfg.stage_dir(stage))
    shared, derivation = shared_row_ids(candidates, dirs)
    row_ids = _sample(shared, rows, pcfg.seed)
    if len(row_ids) < rows:
        print(f"study precheck: only {len(row_ids)} of {CANDIDATES * rows} candidate rows have paths and usable "
              f"rationales in {', '.join(dirs)}; the pre-check runs on those", flush=True)
    runs: dict[str, Path] = {}
    for arm in arms:
        arm_cfg = pcfg.model_copy(update={"train": pcfg.train.for_method(arm)})
        runs[arm] = Path(run_train_stage(arm_cfg, "ka", dirs[METHODS[arm].source], pcfg.stage_dir("train") / arm,
                                         row_ids))
    tokens = {arm: pq.read_table(runs[arm] / TOKENS).sort_by("id").to_pylist() for arm in arms}
    # The base model's views once per distinct token set: arms on the same rationales share their rows.
    before_of = {arm: next(a for a in arms if tokens[a] == tokens[arm]) for arm in arms}
    jobs = {f"{arm}/before": (base, tokens[arm]) for arm in set(before_of.values())}
    jobs |= {f"{arm}/after": (str(runs[arm] / "final"), tokens[arm]) for arm in arms}
    views = answer_views_remote(jobs)
    views |= {f"{arm}/before": views[f"{first}/before"] for arm, first in before_of.items()}
    record: dict[str, Any] = {
        "variant": name, "model": pcfg.model.name_or_path, "rows": len(row_ids), "rows_asked": rows, "steps": steps,
        "candidates": candidates.num_rows, "shared_rows": derivation, "workdir": str(pcfg.stage_dir("train").parent),
        "arms": {}}
    for arm in arms:
        before, after = views[f"{arm}/before"], views[f"{arm}/after"]
        losses = _losses(runs[arm] / "metrics.jsonl")
        record["arms"][arm] = {"label": label(arm), "train_dir": str(runs[arm]), "before": before, "after": after,
                               "target": pcfg.train.for_method(arm).ka.target,
                               "ce_plain_fell": after["ce_plain"] < before["ce_plain"],
                               "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None}
    path = Path(out or cfg.study.precheck)
    atomic_write_json(path, record)
    for r in record["arms"].values():
        print(f"study precheck: {r['label']}: plain-view CE on the gold answer {r['before']['ce_plain']:.4f} -> "
              f"{r['after']['ce_plain']:.4f} ({'fell' if r['ce_plain_fell'] else 'DID NOT FALL'})", flush=True)
    print(f"study precheck: {path}", flush=True)
    return path


def _losses(metrics: Path) -> list[float]:
    from kale_ray import storage

    storage.fetch(metrics)
    if not metrics.is_file():
        return []
    return [json.loads(x)["loss"] for x in metrics.read_text().splitlines() if x.strip() and '"loss"' in x]


def why_not(arm: dict[str, Any]) -> str:
    """A computed reason an arm did not lower the plain view's CE, from the figures beside it."""
    b, a = arm["before"], arm["after"]
    kl_fell = a.get("kl_plain_to_rationale") is not None and a["kl_plain_to_rationale"] < b.get("kl_plain_to_rationale", float("inf"))
    target_rose = a.get("ce_rationale") is not None and a["ce_rationale"] > b.get("ce_rationale", float("inf"))
    if kl_fell and target_rose and arm.get("target", "live") == "live":
        return ("the plain view moved toward the with-rationale view (KL fell), but that view itself got worse "
                "on the gold answer (its CE rose): the target drifted")
    if kl_fell:
        return ("the plain view moved toward the with-rationale view (KL fell), and that view does not put more "
                "mass on the gold answer than the plain one gains from matching it")
    return "its KA loss did not bring the two views closer either (KL did not fall): the arm did not learn in these steps"


def precheck_lines(record: dict[str, Any] | None) -> list[str]:
    """The results page's pre-check section: a table per arm, then plainly which arm did not lower it."""
    if not record:
        return ["No pre-check has run (`kale-ray study precheck --config ...` writes `study.precheck`)."]
    out = [f"Each KA arm of variant `{record['variant']}` trained on the same {record['rows']} training rows "
           f"(asked: {record['rows_asked']}) for {record['steps']} optimizer steps; per answer token of those rows, "
           "before (the base model) and after:", "",
           "| arm | plain-view CE on the gold answer, before -> after | fell? | with-rationale CE, before -> after | "
           "KL(p‖q), before -> after | KA loss, first -> last step |", "|---|---|---|---|---|---|"]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for arm in record["arms"].values():
        b, a = arm["before"], arm["after"]
        out.append(f"| {arm['label']} | {fmt(b.get('ce_plain'))} -> {fmt(a.get('ce_plain'))} | "
                   f"{'yes' if arm['ce_plain_fell'] else '**no**'} | {fmt(b.get('ce_rationale'))} -> "
                   f"{fmt(a.get('ce_rationale'))} | {fmt(b.get('kl_plain_to_rationale'))} -> "
                   f"{fmt(a.get('kl_plain_to_rationale'))} | {fmt(arm.get('first_loss'))} -> {fmt(arm.get('last_loss'))} |")
    failed = [arm for arm in record["arms"].values() if not arm["ce_plain_fell"]]
    out.append("")
    if not failed:
        out.append("Every KA arm lowered the plain view's cross-entropy on the gold answer.")
    for arm in failed:
        out.append(f"- **{arm['label']} did not lower the plain view's cross-entropy on the gold answer** "
                   f"({fmt(arm['before']['ce_plain'])} -> {fmt(arm['after']['ce_plain'])}): {why_not(arm)}.")
    return out
