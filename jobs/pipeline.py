"""Ray job: the whole pipeline (resumes at the first incomplete stage).

`python -m jobs.pipeline --config FILE [...]`, the same under
`ray job submit --working-dir . -- python -m jobs.pipeline ...`, or `jobs.pipeline.main([...])`;
the arguments are those of `kale-ray pipeline`.
"""

import sys
from collections.abc import Sequence

from jobs.common import run_stage


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("pipeline", argv)


if __name__ == "__main__":
    sys.exit(main())
