"""Ray job: benchmark scoring of trained and base models.

`python -m jobs.evaluate --config FILE [...]`, the same under
`ray job submit --working-dir . -- python -m jobs.evaluate ...`, or `jobs.evaluate.main([...])`;
the arguments are those of `kale-ray eval`.
"""

import sys
from collections.abc import Sequence

from jobs.common import run_stage


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("eval", argv)


if __name__ == "__main__":
    sys.exit(main())
