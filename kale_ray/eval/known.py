"""known&incorrect (docs/method.md): does the model know the fact a question needs, yet answer wrongly?

The probe for an item is a fact-check built from its KG path sentence (`path_texts`) or, when it has
none, a sentence of its rationale: the first sentence that mentions the gold answer. Each distractor
option replaces that mention to make a false version of the same sentence. The model "knows" the fact
when it gives the true sentence a higher log-likelihood than every false one (the same rule as `acc`),
all scored after the fixed prefix `PROBE_PREFIX`. Items without a probe sentence are counted as
`no_probe` and left out of the shares.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

PROBE_PREFIX = "The following statement is true:\n"
_ARTICLE = re.compile(r"^(a|an|the)\s+", re.I)
_STOP = {"the", "and", "for", "with", "from", "that", "this", "into", "onto", "than", "they", "their"}


def _core(text: str) -> str:
    return _ARTICLE.sub("", text.strip().rstrip("."))


def _mentions(answer: str) -> list[str]:
    """The whole answer, then its content words, longest first."""
    core = _core(answer)
    words = sorted({w for w in re.findall(r"[A-Za-z][A-Za-z'-]{3,}", core) if w.lower() not in _STOP},
                   key=len, reverse=True)
    return [m for m in [core, *words] if m]


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


def probe_for(row: dict[str, Any], texts: Iterable[str]) -> tuple[str, list[str]] | None:
    """(true statement, false statements) or None when no text mentions the answer."""
    choices, gold = row.get("choices") or [], row.get("gold", -1)
    if gold is None or gold < 0 or len(choices) < 2:
        return None
    distractors = [_core(c) for i, c in enumerate(choices) if i != gold and _core(c)]
    for text in texts:
        for mention in _mentions(choices[gold]):
            pattern = re.compile(rf"(?<![\w]){re.escape(mention)}(?![\w])", re.I)
            if pattern.search(text):
                false = [pattern.sub(d.replace("\\", "\\\\"), text) for d in distractors]
                false = [f for f in false if f != text]
                if false:
                    return text, false
    return None


def probe_texts(probe_row: dict[str, Any] | None) -> list[str]:
    """KG path sentences first; a rationale's sentences when there are none."""
    if not probe_row:
        return []
    paths = [t for t in (probe_row.get("path_texts") or []) if isinstance(t, str) and t.strip()]
    if paths:
        return paths
    rationale = probe_row.get("rationale")
    return _sentences(rationale) if isinstance(rationale, str) else []


def known_flags(scorer: Any, rows: list[dict[str, Any]], probes: dict[str, dict[str, Any]]) -> list[bool | None]:
    """Per row: True (known), False (not known) or None (no probe could be built)."""
    built = [probe_for(row, probe_texts(probes.get(row["id"]))) for row in rows]
    pairs = [(PROBE_PREFIX, s) for probe in built if probe for s in [probe[0], *probe[1]]]
    lls = iter(scorer.loglikelihood(pairs)) if pairs else iter(())
    flags: list[bool | None] = []
    for probe in built:
        if probe is None:
            flags.append(None)
            continue
        true_ll = next(lls)
        false_lls = [next(lls) for _ in probe[1]]
        flags.append(true_ll > max(false_lls))
    return flags


def shares(known: list[bool | None], correct: list[float]) -> dict[str, float | int]:
    """known&correct / known&incorrect / unknown as shares of the probed items."""
    probed = [(k, c) for k, c in zip(known, correct, strict=True) if k is not None]
    n = len(probed)
    kc = sum(1 for k, c in probed if k and c > 0)
    ki = sum(1 for k, c in probed if k and c <= 0)
    return {"probed": n, "no_probe": len(known) - n,
            "known_correct": kc / n if n else 0.0, "known_incorrect": ki / n if n else 0.0,
            "unknown": (n - kc - ki) / n if n else 0.0}
