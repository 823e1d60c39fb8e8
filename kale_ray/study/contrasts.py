"""The study's primary contrasts, named before any result is seen, tested item by item.

Every arm is scored on the same held-out items, so each contrast pairs the two arms' correctness on
each item (averaged over the seeds both arms ran, the item staying the unit): an exact McNemar/sign test,
a paired bootstrap 95% interval stratified by benchmark, Holm's correction over the contrasts tested, and
the minimal detectable difference of the design at 80% power. The seed spread is a different quantity
(how much a rerun moves the mean) and is reported apart.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from kale_ray.methods import RunId
from kale_ray.study.stats import detectable_difference, holm, paired_bootstrap, sign_test

# (name, method A, method B, how B's variant is found): "same" = the same variant as A; "live" = A is KALE
# in a variant that freezes the target, B is KALE in the first variant with the live target (collections
# made before the frozen target was an arm of its own, `ka-frozen`). A name's first line that the
# collection can answer is the one tested.
PRIMARY: list[tuple[str, str, str, str]] = [
    ("KALE vs SFT", "ka", "sft", "same"),
    ("KALE vs w/o KI", "ka", "ka-noki", "same"),
    ("KALE vs w/o KA", "ka", "ce-rationale", "same"),
    ("frozen vs live target", "ka-frozen", "ka", "same"),
    ("frozen vs live target", "ka", "ka", "live"),
]
METRICS = ("acc", "acc_norm")
BOOTSTRAP_SEED = 0
N_BOOT = 2000


@dataclass
class Arm:
    variant: str
    method: str
    labels: dict[int | None, str]  # seed -> the eval label of that run


def _arms(results: dict[str, Any], variant: str, method: str) -> Arm | None:
    data = results["variants"][variant]
    labels: dict[int | None, str] = {}
    for label_, run in (data.get("runs") or {}).items():
        rid = RunId.from_dict(run)
        if rid.method == method and label_ in (data.get("items") or {}):
            labels[rid.seed] = label_
    return Arm(variant, method, labels) if labels else None


def _target(data: dict[str, Any]) -> str:
    frozen = any(o.replace(" ", "") == "train.ka.target=frozen" for o in data.get("overrides", []))
    return "frozen" if frozen else "live"


def find_pairs(results: dict[str, Any]) -> list[tuple[str, Arm, Arm]]:
    """The primary contrasts the collected runs can answer, each as (name, arm A, arm B)."""
    variants = list(results["variants"])
    out: list[tuple[str, Arm, Arm]] = []
    for name, a_method, b_method, how in PRIMARY:
        if any(found == name for found, _, _ in out):
            continue
        for v in variants:
            if how == "same":
                a, b = _arms(results, v, a_method), _arms(results, v, b_method)
            else:
                if _target(results["variants"][v]) != "frozen":
                    continue
                live = next((w for w in variants if _target(results["variants"][w]) == "live"
                             and _arms(results, w, b_method)), None)
                a, b = _arms(results, v, a_method), (_arms(results, live, b_method) if live else None)
            if a and b:
                out.append((name, a, b))
                break
    return out


def _item_means(results: dict[str, Any], arm: Arm, seeds: list[int | None], metric: str
                ) -> dict[tuple[str, str], float]:
    """(benchmark, item id) -> the arm's correctness averaged over `seeds`, for items every seed scored."""
    data = results["variants"][arm.variant]
    sums: dict[tuple[str, str], list[int]] = {}
    for seed in seeds:
        for bench, scores in data["items"][arm.labels[seed]].items():
            for item, bit in zip(data["item_ids"][bench], scores[metric], strict=True):
                if bit != ".":
                    sums.setdefault((bench, item), []).append(int(bit))
    return {k: statistics.fmean(v) for k, v in sums.items() if len(v) == len(seeds)}


def _seeds(a: Arm, b: Arm) -> tuple[list[int | None], list[int | None]]:
    shared = sorted((s for s in a.labels if s in b.labels), key=lambda s: (s is None, s))
    if shared:
        return shared, shared
    return sorted(a.labels, key=lambda s: (s is None, s)), sorted(b.labels, key=lambda s: (s is None, s))


def primary_contrasts(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per primary contrast that ran: items, seeds, and per metric the difference A - B with
    its interval, the exact p, the Holm-adjusted p over the contrasts tested, the discordance of one
    seed pair and the difference the design detects at 80% power."""
    records: list[dict[str, Any]] = []
    for name, a, b in find_pairs(results):
        seeds_a, seeds_b = _seeds(a, b)
        record: dict[str, Any] = {"name": name, "a": {"variant": a.variant, "method": a.method},
                                  "b": {"variant": b.variant, "method": b.method},
                                  "seeds": [s for s in seeds_a if s in seeds_b] or None}
        for metric in METRICS:
            ma, mb = _item_means(results, a, seeds_a, metric), _item_means(results, b, seeds_b, metric)
            keys = sorted(k for k in ma if k in mb)
            if not keys:
                continue
            x, y = [ma[k] for k in keys], [mb[k] for k in keys]
            ci = paired_bootstrap(x, y, [k[0] for k in keys], n_boot=N_BOOT, seed=BOOTSTRAP_SEED)
            wins_a, wins_b, p = sign_test([u - v for u, v in zip(x, y, strict=True)])
            # Discordance of single runs: the share of items where one seed pair disagrees, averaged.
            pairs = list(zip(seeds_a, seeds_b, strict=False)) or [(seeds_a[0], seeds_b[0])]
            rates = []
            for sa, sb in pairs:
                one_a, one_b = _item_means(results, a, [sa], metric), _item_means(results, b, [sb], metric)
                both = [k for k in one_a if k in one_b]
                rates.append(sum(one_a[k] != one_b[k] for k in both) / len(both) if both else 0.0)
            discordance = statistics.fmean(rates)
            record[metric] = {"items": len(keys), "diff": ci.diff, "low": ci.low, "high": ci.high,
                              "a_ahead": wins_a, "b_ahead": wins_b, "p": p, "discordance": discordance,
                              "detectable": detectable_difference(len(keys), discordance) if discordance else None}
        if any(m in record for m in METRICS):
            records.append(record)
    for metric in METRICS:
        tested = {r["name"]: r[metric]["p"] for r in records if metric in r}
        for r_name, adjusted in holm(tested).items():
            next(r for r in records if r["name"] == r_name)[metric]["p_holm"] = adjusted
    return records


def arm_sizes(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per trained arm (variant and method): seeds, training rows used, the hash of their ids and
    optimizer steps per run, from the train manifests (None where the collection predates them)."""
    arms: dict[tuple[str, str], dict[str, Any]] = {}
    for variant, data in results["variants"].items():
        for dir_name, run in (data.get("train") or {}).items():
            rid = RunId.from_dir_name(dir_name)
            if rid is None:
                continue
            arm = arms.setdefault((variant, rid.method), {"variant": variant, "method": rid.method, "seeds": [],
                                                           "rows_used": set(), "row_sets": set(), "steps": set()})
            arm["seeds"].append(rid.seed)
            arm["rows_used"].add(run.get("rows_used"))
            arm["row_sets"].add(run.get("row_ids_sha256"))
            arm["steps"].add(run.get("optimizer_steps") or run.get("steps"))
    return list(arms.values())
