#!/usr/bin/env bash
# Table 2b: domain generalisation. The ImageNet runs of xd.sh, evaluated on ImageNet-V2, -Sketch, -A and -R.
# Usage: bash scripts/reproduce/table2.sh [--gpus 0,1,2,3 | --gpus "" --jobs N] [--emit-slurm FILE] [--dry-run] [--rerun-stale]
# Environment: DATA OUTPUT SHOTS EPOCHS BACKBONE EXTRA_OPTS (as scripts/common.sh) and
#   METHODS (default: the paper's rows; add kgcoop prograd promptsrc for the modern baselines), DATASETS (default: imagenetv2 imagenet_sketch imagenet_a imagenet_r), SEEDS (default: 1 2 3).
# Finished runs are skipped, stale ones stop it (see --rerun-stale); run it again to retry failures. Then:
#   python -m tools.experiments.report "${OUTPUT:-output}" --tables dg
# The job engine and every option: python -m runs.jobs --help
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python}" -m runs.jobs table2 "$@"
