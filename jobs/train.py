"""Ray job: one method's KA / SFT / w/o-KA fine-tuning run.

`ray job submit --working-dir . -- python -m jobs.train --config FILE [key=value ...]` (or the same command
locally); the arguments are those of `kale-ray train`.
"""

import sys
from collections.abc import Sequence

from kale_ray.cli import run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("train", argv)


if __name__ == "__main__":
    sys.exit(main())
