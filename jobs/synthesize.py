"""Ray job: the KI stage: KG paths and rationales for the training split.

`ray job submit --working-dir . -- python -m jobs.synthesize --config FILE [key=value ...]` (or the same command
locally); the arguments are those of `kale-ray synth`.
"""

import sys
from collections.abc import Sequence

from kale_ray.cli import run_job


def main(argv: Sequence[str] | None = None) -> int:
    return run_job("synth", argv)


if __name__ == "__main__":
    sys.exit(main())
