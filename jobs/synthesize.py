"""Ray job: the KI stage: KG paths and rationales for the training split.

`python -m jobs.synthesize --config FILE [...]`, the same under
`ray job submit --working-dir . -- python -m jobs.synthesize ...`, or `jobs.synthesize.main([...])`;
the arguments are those of `kale-ray synth`.
"""

import sys
from collections.abc import Sequence

from jobs.common import run_stage


def main(argv: Sequence[str] | None = None) -> int:
    return run_stage("synth", argv)


if __name__ == "__main__":
    sys.exit(main())
