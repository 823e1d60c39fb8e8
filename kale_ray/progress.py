"""Progress lines that survive `ray job logs --follow` and metrics files a person can plot.

Lines go through `print(..., flush=True)` because Ray captures worker and driver stdout into the job
log; rate and ETA are computed from wall time since start.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from kale_ray import storage


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    """Counts units of work and prints `name: done/total (rate unit/s, ETA ...)` at most every `every_s`."""

    def __init__(self, name: str, total: int | None, unit: str = "rows", every_s: float = 5.0,
                 metrics_path: Path | None = None) -> None:
        self.name, self.total, self.unit, self.every_s = name, total, unit, every_s
        self.done = 0
        self.extra: dict[str, float] = {}
        self.start = time.monotonic()
        self._last = 0.0
        self._logged: int | None = None  # `done` at the last line printed
        self.metrics = MetricsWriter(metrics_path) if metrics_path else None

    def update(self, n: int = 1, **counters: float) -> None:
        self.done += n
        for key, value in counters.items():
            self.extra[key] = self.extra.get(key, 0.0) + value
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.log()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        total = f"/{self.total}" if self.total is not None else ""
        parts = [f"{self.name}: {self.done}{total} {self.unit}", f"{rate:.2f} {self.unit}/s"]
        for key, value in self.extra.items():
            parts.append(f"{value / elapsed:.1f} {key}/s")
        if self.total and rate > 0:
            parts.append(f"ETA {format_seconds((self.total - self.done) / rate)}")
        parts.append(f"elapsed {format_seconds(elapsed)}")
        return ", ".join(parts)

    def log(self) -> None:
        self._logged = self.done
        print(self.line(), file=sys.stdout, flush=True)
        if self.metrics:
            elapsed = time.monotonic() - self.start
            self.metrics.write({"stage": self.name, "done": self.done, "elapsed_s": elapsed,
                                f"{self.unit}_per_s": self.done / max(elapsed, 1e-9), **self.extra})

    def close(self) -> None:
        """The final line, unless the last update already printed it."""
        if self._logged != self.done:
            self.log()


class MetricsWriter:
    """Appends one JSON object per line; each line is flushed so a crash keeps what came before. With
    an object-store workdir the file continues what the store holds and is published after each line."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        storage.fetch(self.path)

    def write(self, record: dict[str, Any]) -> None:
        record = {"time": time.time(), **record}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, default=float) + "\n")
        storage.publish(self.path)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a crash
    return rows
