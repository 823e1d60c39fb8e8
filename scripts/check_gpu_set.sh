#!/usr/bin/env bash
# The GPU set resolves: the `gpu` extra (ray[llm], which pins vLLM) together with the core set, under
# the GPU lock (requirements/gpu.txt), as `KALE_EXTRAS=dev,gpu scripts/install.sh` on a GPU node installs it. Metadata only: nothing is installed and no GPU
# is needed. CI runs it (.ci/run) so a pin that breaks the GPU nodes' setup fails here first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${KALE_PYTHON:-.venv/bin/python}
report=$(mktemp)
trap 'rm -f "$report"' EXIT
if ! "$PY" -m pip --disable-pip-version-check install --dry-run --ignore-installed --quiet \
    --report "$report" -c requirements/gpu.txt ".[dev,gpu]" 2> >(grep -v "is ignored: it is neither" >&2); then
  echo "check_gpu_set: FAILED: the gpu extra does not resolve together with the core set under requirements/gpu.txt (scripts/lock.sh regenerates it)" >&2
  exit 1
fi
"$PY" - "$report" <<'PY'
import json, sys

chosen = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.load(open(sys.argv[1]))["install"]}
print("check_gpu_set: ok: " + ", ".join(f"{n} {chosen[n]}" for n in ("ray", "vllm", "torch", "numba", "transformers")
                                         if n in chosen))
PY
