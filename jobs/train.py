"""Ray job: one method's KA / SFT / w/o-KA fine-tuning run.

`python -m jobs.train --config FILE [...]`, the same under
`ray job submit --working-dir . -- python -m jobs.train ...`, or `jobs.train.main([...])`;
the arguments are those of `kale-ray train`.
"""

import sys
from collections.abc import Sequence

from jobs.common import run_stage


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("train", argv)


if __name__ == "__main__":
    sys.exit(main())
