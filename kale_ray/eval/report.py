"""The results directory's human-readable parts: a markdown table and a PNG bar chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kale_ray.artifacts import atomic_write_bytes


def _benchmarks(summary: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    seen: list[str] = []
    for per_bench in summary.values():
        seen.extend(b for b in per_bench if b not in seen)
    return seen


def _cell(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def markdown_table(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Methods x benchmarks: accuracy (acc for multiple choice, exact match for generative), then
    acc_norm and known&incorrect with its coverage and reference line where they exist. Numbers are percentages."""
    benches = _benchmarks(summary)
    lines = ["| method | " + " | ".join(benches) + " |", "|---|" + "---|" * len(benches)]
    for method, per_bench in summary.items():
        cells = [_cell(per_bench.get(b, {}).get("accuracy")) for b in benches]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    out = ["## Accuracy (%)", "", *lines, ""]
    norm_rows = [(m, [pb.get(b, {}).get("acc_norm") for b in benches]) for m, pb in summary.items()]
    if any(v is not None for _, vals in norm_rows for v in vals):
        out += ["## acc_norm (%)", "", lines[0], lines[1]]
        out += [f"| {m} | " + " | ".join(_cell(v) for v in vals) + " |" for m, vals in norm_rows]
        out.append("")
    known_rows = [(m, b, pb[b]["known"]) for m, pb in summary.items() for b in benches
                  if (pb.get(b, {}).get("known") or {}).get("covered") is not None]
    if known_rows:
        out += ["## known&incorrect (key-fact questions)", "",
                "known&incorrect: of the items whose key fact the model knows, the % it answers wrongly; "
                "reference: 1 - accuracy on the covered items (%).", "",
                "| method | benchmark | covered / items | known (% of covered) | known&incorrect | reference |",
                "|---|---|---|---|---|---|"]
        for m, b, k in known_rows:
            out.append(f"| {m} | {b} | {k['covered']} / {k['items']} | {_cell(k['known_share'])} | "
                       f"{_cell(k['known_incorrect'])} | {_cell(k['reference'])} |")
        out.append("")
    counts = {b: max(pb.get(b, {}).get("n", 0) for pb in summary.values()) for b in benches}
    out.append("Items per benchmark: " + ", ".join(f"{b} {n}" for b, n in counts.items()) + ".")
    return "\n".join(out) + "\n"


def bar_chart(summary: dict[str, dict[str, dict[str, Any]]], path: Path) -> Path:
    """Grouped bars: one group per benchmark, one bar per method."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches, methods = _benchmarks(summary), list(summary)
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(benches) + 2), 3.6), dpi=110)
    for i, method in enumerate(methods):
        values = [100 * (summary[method].get(b, {}).get("accuracy") or 0.0) for b in benches]
        xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(benches))]
        bars = ax.bar(xs, values, width, label=method)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(benches)), benches)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title("kale-ray evaluation")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)
