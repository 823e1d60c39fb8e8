"""From paths rows to rationale rows: choose the prompt, call the writer, judge and label the output.

Pure Python over lists of dicts, so the same code runs inside a Ray actor and in a unit test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from kale_ray.synth.backends.base import Backend, Generation, Request
from kale_ray.synth.prompts import build_messages, check_rationale, facts

STATUSES = ("ok", "fallback", "dropped", "no_rationale", "degenerate", "error")

OUTPUT_FIELDS = [
    pa.field("rationale", pa.string()),
    pa.field("prompt", pa.string()),
    pa.field("ki", pa.bool_()),
    pa.field("status", pa.string()),
    pa.field("error", pa.string()),
    pa.field("error_kind", pa.string()),
    pa.field("generator", pa.string()),
    pa.field("tokens", pa.int64()),
    pa.field("retries", pa.int64()),
]


def output_schema(input_schema: pa.Schema) -> pa.Schema:
    names = {f.name for f in OUTPUT_FIELDS}
    kept = [f for f in input_schema if f.name not in names]
    return pa.schema([*kept, *OUTPUT_FIELDS])


@dataclass(frozen=True)
class Plan:
    """How one row is written: with paths (ki), without (w/o KI), or not at all (dropped; no_rationale:
    the writer writes from paths only and the row is written without)."""

    ki: bool
    base_status: str  # "ok" | "fallback" | "dropped" | "no_rationale"

    @property
    def writes(self) -> bool:
        """Whether the writer is asked for this row."""
        return self.base_status not in ("dropped", "no_rationale")


def has_path(row: dict[str, Any], max_paths: int) -> bool:
    return row.get("path_status") == "ok" and bool(facts(row, max_paths))


def plan_row(row: dict[str, Any], ki: bool, no_path: str, max_paths: int, needs_paths: bool = False) -> Plan:
    """Rows with a path get the KI prompt (or the w/o-KI one in the ablation); the rest follow
    `paths.no_path`, in both arms, so the KI and w/o-KI runs train on the same rows. A writer that
    `needs_paths` (the template) writes nothing for a row it would be given no paths for."""
    if has_path(row, max_paths):
        if needs_paths and not ki:
            return Plan(ki=False, base_status="no_rationale")
        return Plan(ki=ki, base_status="ok")
    if no_path == "drop":
        return Plan(ki=False, base_status="dropped")
    return Plan(ki=False, base_status="no_rationale" if needs_paths else "fallback")


def _generate_safely(backend: Backend, requests: list[Request]) -> list[Generation]:
    """A batch that raises is retried row by row, so one bad row cannot fail its neighbours."""
    if not requests:
        return []
    try:
        return backend.generate(requests)
    except Exception:  # noqa: BLE001 (isolate the culprit below)
        out = []
        for req in requests:
            try:
                out.extend(backend.generate([req]))
            except Exception as err:  # noqa: BLE001 (a per-row failure is data, not a crash)
                out.append(Generation(error=f"{type(err).__name__}: {err}"[:500], error_kind="generation",
                                      prompt=backend.render(req.messages)))
        return out


def write_rationales(rows: list[dict[str, Any]], backend: Backend, *, ki: bool, no_path: str,
                     max_paths: int, generator: dict[str, Any]) -> list[dict[str, Any]]:
    """One output row per input row, in order, every one labelled with a status."""
    plans = [plan_row(r, ki, no_path, max_paths, backend.needs_paths) for r in rows]
    todo = [i for i, p in enumerate(plans) if p.writes]
    requests = [Request(build_messages(rows[i], plans[i].ki, max_paths), rows[i], plans[i].ki) for i in todo]
    gens: dict[int, Generation] = dict(zip(todo, _generate_safely(backend, requests), strict=True))
    meta = json.dumps(generator, sort_keys=True)
    return [finish_row(row, plan, gens.get(i), meta, llm=backend.llm)
            for i, (row, plan) in enumerate(zip(rows, plans, strict=True))]


def finish_row(row: dict[str, Any], plan: Plan, gen: Generation | None, meta: str, llm: bool = True) -> dict[str, Any]:
    """The output row of `row`: its plan's status, or the judged generation (`gen`; None: not generated).
    Shared by the actor writers and the ray.data.llm writer (kale_ray.synth.ray_llm), which judges in
    the driver what Ray's vLLM processor returned."""
    result = {"rationale": None, "prompt": "", "ki": plan.ki, "status": plan.base_status, "error": None,
              "error_kind": None, "generator": meta, "tokens": 0, "retries": 0}
    if gen is not None:
        result.update(prompt=gen.prompt, tokens=gen.tokens, retries=gen.extra.get("retries", 0))
        if gen.error is not None:
            result.update(status="error", error=gen.error, error_kind=gen.error_kind)
        else:
            verdict = check_rationale(gen.text, gen.finish_reason, row.get("choices"), llm=llm,
                                      question=row.get("question"), gold=row.get("gold_text"))
            result["rationale"] = verdict.text
            if verdict.degenerate:
                result.update(status="degenerate", error=f"degenerate: {verdict.degenerate}",
                              error_kind=verdict.degenerate)
    return {**row, **result}
