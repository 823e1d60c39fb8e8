#!/usr/bin/env bash
# The README's test command: install (idempotent), then the test suite.
#   scripts/test.sh            the default suite (CPU, under 18 minutes on 2 cores)
#   scripts/test.sh slow       the slow marked checks
#   scripts/test.sh -k loss    any pytest arguments
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
if [ "${1:-}" = slow ]; then shift; set -- -m slow "$@"; fi
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then echo "test.sh: pytest collected no tests" >&2; exit 1; fi
exit "$rc"
