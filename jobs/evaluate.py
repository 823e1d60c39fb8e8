"""Ray job: benchmark scoring of the base model and every trained method of a config's run.

`ray job submit --working-dir . -- python -m jobs.evaluate --config FILE [key=value ...]` (or the same command
locally); the arguments are those of `kale-ray eval`.
"""

import sys
from collections.abc import Sequence

from kale_ray.cli import run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("eval", argv)


if __name__ == "__main__":
    sys.exit(main())
