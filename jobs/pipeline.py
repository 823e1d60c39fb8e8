"""Ray job: the whole pipeline; a resubmitted job resumes at the first incomplete stage.

`ray job submit --working-dir . -- python -m jobs.pipeline --config FILE [key=value ...]` (or the same command
locally); the arguments are those of `kale-ray pipeline`.
"""

import sys
from collections.abc import Sequence

from kale_ray.cli import run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("pipeline", argv)


if __name__ == "__main__":
    sys.exit(main())
