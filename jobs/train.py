"""Ray job entry of the train stage: `python -m jobs.train --config X [--method ka] [key=value ...]`.

Works the same under `ray job submit --working-dir . -- python -m jobs.train ...` (init_ray joins
the job's cluster through RAY_ADDRESS).
"""

import sys

from kale_ray.train.commands import main

if __name__ == "__main__":
    sys.exit(main())
