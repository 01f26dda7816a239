#!/usr/bin/env bash
# Table 1: base-to-new generalisation, 11 datasets x seeds 1-3, every method (zero-shot CLIP included).
# Usage: bash scripts/reproduce/table1.sh [--gpus 0,1,2,3 | --gpus "" --jobs N] [--emit-slurm FILE] [--dry-run] [--rerun-stale]
# Environment: DATA OUTPUT SHOTS EPOCHS BACKBONE EXTRA_OPTS (as scripts/common.sh) and
#   METHODS (default: zsclip slip coop cocoop maple stylip gopro; add kgcoop prograd promptsrc for the
#   modern baselines), DATASETS (default: the 11), SEEDS (default: 1 2 3).
# Finished runs are skipped, stale ones stop it (see --rerun-stale); run it again to retry failures. Then:
#   python -m tools.experiments.report "${OUTPUT:-output}" --tables table1
# The job engine and every option: python -m runs.jobs --help
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python}" -m runs.jobs table1 "$@"
