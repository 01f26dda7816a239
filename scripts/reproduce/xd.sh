#!/usr/bin/env bash
# Table 2a: cross-dataset transfer. Train on ImageNet (all classes, 16 shots) per method and seed, evaluate on 10 datasets.
# Usage: bash scripts/reproduce/xd.sh [--gpus 0,1,2,3 | --gpus "" --jobs N] [--emit-slurm FILE] [--dry-run] [--rerun-stale]
# Environment: DATA OUTPUT SHOTS EPOCHS BACKBONE EXTRA_OPTS (as scripts/common.sh) and
#   METHODS (default: the paper's rows; add kgcoop prograd promptsrc for the modern baselines), DATASETS (default: the 10 targets), SEEDS (default: 1 2 3).
# Finished runs are skipped, stale ones stop it (see --rerun-stale); run it again to retry failures. Then:
#   python -m tools.experiments.report "${OUTPUT:-output}" --tables xd
# The job engine and every option: python -m runs.jobs --help
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python}" -m runs.jobs xd "$@"
