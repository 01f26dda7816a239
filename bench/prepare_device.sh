#!/usr/bin/env bash
# Prepare the one-call GPU check (bench/gpu_check.sh) for a lent device machine, then print the
# exact device command. Run here, in the repository root, with network access:
#   bash bench/prepare_device.sh
# The device image (Python 3.12, torch, torchvision, numpy, tabulate, tensorboard, matplotlib, ...)
# lacks this project's CLIP package and config library: their wheels go into .whl/ (ignored by git,
# carried by the device call: `carry: [".whl"]`) and are installed there into /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# Missing on the device image, with the dependencies it also lacks (clip-anytorch needs ftfy,
# ftfy needs wcwidth; both CLIP packagings import pkg_resources, gone from setuptools 81). The
# open_clip backbone is imported with the trainers; its own needs (timm, huggingface_hub,
# safetensors, regex) are on the image.
WHEELS=(clip-anytorch==2.6.0 open-clip-torch==3.3.0 yacs==0.1.8 ftfy==6.3.1 wcwidth==0.2.13 "setuptools==80.9.0")
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || grep -qx '/.whl/' .gitignore || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl "${WHEELS[@]}"
ls -1 .whl
cat <<'CMD'

Device command (tool `run`, carry [".whl"], timeout_s 560: the check keeps to a 450 s budget):

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; PYTHON=python3 bash bench/gpu_check.sh --out "$OUT"

Then copy the returned gpu_check.json (and its logs) into bench/ here: cp <files_at>/gpu_check*.* bench/
CMD
