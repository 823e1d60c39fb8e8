"""Two uses of a trained probe: "known" for the known&incorrect analysis, and which training rows
synthesis spends its work on.

(a) `eval.known_from: probe`: an item is known when the probe (trained at the best layer on the base
model's states) gives P(known) >= 0.5 on the last-token state of the scored model's prompt. For a
fine-tuned method that is the fine-tuned model's state at the same layer: the probe reads the same
layer of the same architecture, an approximation the fact-check question does not need.
(b) `synth.select: probe`: path search and rationale writing run only on training rows whose P(known)
is below 0.5 + `probe.select_margin` (unknown or uncertain); rows without a state (prompt too long)
are kept, never silently skipped.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from kale_ray.config import ConfigError
from kale_ray.data.format import prompt_text


def load_probe(cfg: Any) -> Any:  # kale_ray.probe.mlp.Probe
    from kale_ray.probe.mlp import Probe
    from kale_ray.probe.stage import probe_dir

    path = probe_dir(cfg) / "probe.npz"
    if not path.is_file():
        raise ConfigError(f"no trained probe at {path}: run `kale-ray probe` first (or set probe.out)")
    return Probe.load(path)


def probe_known_flags(scorer: Any, rows: list[dict[str, Any]], cfg: Any, batch: int = 16) -> list[bool | None]:
    """Per row: P(known) >= 0.5 from the scored model's hidden state; None when the prompt is too long."""
    from kale_ray.probe.hidden import last_token_states

    engine = getattr(scorer, "engine", None)
    if engine is None or not hasattr(engine, "model"):
        raise ConfigError("eval.known_from=probe needs an in-process model (hidden states); "
                          "served models have none: use eval.known_from=fact")
    probe = load_probe(cfg)
    limit = min(cfg.probe.max_length or engine.context_length, engine.context_length)
    seqs = [engine.encode(prompt_text(r["question"])) for r in rows]
    ok = [i for i, s in enumerate(seqs) if 0 < len(s) <= limit]
    flags: list[bool | None] = [None] * len(rows)
    with engine._lock, engine._use(getattr(scorer, "adapter", None)):
        for start in range(0, len(ok), batch):
            chunk = ok[start:start + batch]
            states = last_token_states(engine.model, [seqs[i] for i in chunk], [probe.layer], engine.pad_id)
            for i, p in zip(chunk, probe.predict(states[:, 0]), strict=True):
                flags[i] = bool(p >= 0.5)
    return flags


def select_rows(cfg: Any, rows: pa.Table) -> tuple[pa.Table, dict[str, Any]]:
    """The rows synthesis works on, and what the selection did (for the synth manifest)."""
    if cfg.synth.select == "all":
        return rows, {"mode": "all", "rows_total": rows.num_rows, "rows_selected": rows.num_rows,
                      "rows_skipped": 0}
    from kale_ray.probe.hidden import read_states
    from kale_ray.probe.stage import probe_dir, run_probe_stage

    run_probe_stage(cfg)  # skips itself when complete; its hidden states cover the training rows
    probe = load_probe(cfg)
    ids, x = read_states(probe_dir(cfg) / "hidden", probe.layer)
    wanted = set(rows.column("id").to_pylist())
    p_known = {rid: p for rid, p in zip(ids, probe.predict(x).tolist(), strict=True) if rid in wanted}
    cut = 0.5 + cfg.probe.select_margin
    skip = sorted(rid for rid, p in p_known.items() if p >= cut)
    selected = rows.filter(pc.invert(pc.is_in(rows.column("id"), pa.array(skip, pa.string()))))
    info = {"mode": "probe", "layer": probe.layer, "p_known_cut": cut, "rows_total": rows.num_rows,
            "rows_selected": selected.num_rows, "rows_skipped": len(skip),
            "rows_without_state": rows.num_rows - len(p_known)}
    print(f"synth select: the probe (layer {probe.layer}) marks {len(skip)} of {rows.num_rows} training rows "
          f"known (P >= {cut:.2f}); path search and rationales run on {selected.num_rows}", flush=True)
    return selected, info


def pairs_searched(paths: pa.Table, max_pairs_per_row: int) -> int:
    """(question entity, answer entity) pairs the paths stage searched, as RowPathFinder counts them."""
    total = 0
    for q, a in zip(paths.column("q_entities").to_pylist(), paths.column("a_entities").to_pylist(), strict=True):
        total += min(sum(1 for s in q or [] for t in a or [] if s != t), max_pairs_per_row)
    return total


def work_record(select: dict[str, Any], paths: pa.Table, tokens: int, max_pairs_per_row: int) -> dict[str, Any]:
    """The selection plus the work done, and the work saved estimated at the selected rows' mean per row
    (the skipped rows were never searched, so their own cost is unknown; the full run measures it)."""
    pairs = pairs_searched(paths, max_pairs_per_row) if "q_entities" in paths.column_names else None
    nodes = int(pc.sum(paths.column("nodes_expanded")).as_py() or 0) if "nodes_expanded" in paths.column_names else None
    done = max(select.get("rows_selected", paths.num_rows), 1)
    skipped = select.get("rows_skipped", 0)
    record = {**select, "pairs_searched": pairs, "nodes_expanded": nodes, "rationale_tokens": tokens}
    if skipped:
        record["skipped_share"] = skipped / max(select["rows_total"], 1)
        record["est_pairs_saved"] = round(pairs * skipped / done) if pairs is not None else None
        record["est_rationale_tokens_saved"] = round(tokens * skipped / done)
    return json.loads(json.dumps(record))

