"""`loss.png` of a run from its metrics.jsonl (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

from kale_ray.progress import read_metrics


def plot_losses(metrics_path: Path, out: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_metrics(metrics_path) if "step" in r and "loss" in r]
    last: dict[int, dict] = {r["step"]: r for r in rows}  # a resumed run re-logs steps: keep the latest
    steps = sorted(last)
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("loss", "kl", "ce"):
        values = [last[s].get(key) for s in steps]
        if any(v for v in values):
            ax.plot(steps, values, label=key, marker="o" if len(steps) < 30 else None)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("mean per answer token")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out)
    return out
