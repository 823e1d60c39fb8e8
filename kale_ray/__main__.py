"""`python -m kale_ray ...` is `kale-ray ...`."""

import sys

from kale_ray.cli import main

if __name__ == "__main__":
    sys.exit(main())
