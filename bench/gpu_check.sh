#!/usr/bin/env bash
# Speed, memory and numerics of every method in one prepared command (see bench/gpu_check.py).
#   bash bench/gpu_check.sh                         # CUDA: ViT-B/16, C = 10/100/1000, fp16 + bf16, < 8 minutes
#   bash bench/gpu_check.sh --device cpu --quick    # CPU: tiny CLIP, small C (what the tests run)
#   bash bench/gpu_check.sh --out "$OUT"            # JSON and logs into another folder (default bench/out)
# Python: $PYTHON, else the repository's .venv, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONUNBUFFERED=1
exec "$PYTHON" bench/gpu_check.py "$@"
