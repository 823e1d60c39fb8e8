"""The end-to-end pipeline as a Ray job; re-submitting after a crash finishes the remaining work."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from jobs.common import job_config


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from kale_ray.pipeline import run_pipeline

    return run_pipeline(job_config("pipeline", argv))


if __name__ == "__main__":
    main(sys.argv[1:])
