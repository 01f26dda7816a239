#!/usr/bin/env bash
# CoOp's few-shot protocol: 1, 2, 4, 8 and 16 images per class, all classes, 11 datasets x seeds 1-3,
# every method that defines it (runs/methods.py: fewshot_cfg); zero-shot CLIP once per dataset.
# Each run trains, then tests on all classes of the test split (the result is in its log).
# Usage: bash scripts/reproduce/fewshot.sh [--gpus 0,1,2,3 | --gpus "" --jobs N] [--emit-slurm FILE] [--dry-run] [--rerun-stale]
# Environment: DATA OUTPUT EPOCHS BACKBONE EXTRA_OPTS (as scripts/common.sh) and
#   METHODS (default: every method with a few-shot config), DATASETS (default: the 11),
#   SEEDS (default: 1 2 3), SHOTS_LIST (default: 1 2 4 8 16).
# Finished runs are skipped, stale ones stop it (see --rerun-stale); run it again to retry failures. Then:
#   python -m tools.experiments.report "${OUTPUT:-output}" --tables fewshot
# The job engine and every option: python -m runs.jobs --help
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python}" -m runs.jobs fewshot "$@"
