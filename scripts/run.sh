#!/usr/bin/env bash
# The README's main command: install (idempotent), then the end-to-end pipeline on the embedded
# default (local Ray, real SmolLM2-135M-Instruct, real data). Extra arguments are config overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export KALE_OFFLINE=${KALE_OFFLINE:-1}  # the embedded default reads local files only (kale_ray/env.py)
exec .venv/bin/kale-ray pipeline --config "${KALE_CONFIG:-configs/demo.yaml}" "$@"
