"""Judge a rationales artifact again with the current degenerate-output checks
(kale_ray.synth.prompts.check_rationale), so writers run under different judges compare under one:

    .venv/bin/python scripts/rejudge_rationales.py artifacts/synth-check/synth [more dirs ...]

Only the rows the writer wrote and the judge read (status ok, fallback, degenerate) are judged; the
finish reason is not stored, so a rationale of `max_new_tokens` tokens counts as cut at the cap.
"""

from __future__ import annotations

import json
import sys
from collections import Counter

from kale_ray.artifacts import read_parts
from kale_ray.synth.prompts import check_rationale


def rejudge(directory: str) -> dict[str, object]:
    rows = [r for r in read_parts(directory).to_pylist() if r["status"] in ("ok", "fallback", "degenerate")]
    kinds: Counter[str] = Counter()
    for r in rows:
        cap = json.loads(r["generator"]).get("max_new_tokens")
        finish = "length" if cap and r["tokens"] >= cap else "stop"
        verdict = check_rationale(r["rationale"], finish, r.get("choices"), question=r["question"], gold=r["gold_text"])
        if verdict.degenerate:
            kinds[verdict.degenerate] += 1
    bad = sum(kinds.values())
    return {"dir": directory, "judged": len(rows), "degenerate": bad,
            "rate": round(bad / len(rows), 4) if rows else None, "kinds": dict(kinds.most_common())}


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(json.dumps(rejudge(path)))
