#!/usr/bin/env bash
# Table 3: GOPro loss ablation, base-to-new on 11 datasets (scripts/gopro/ablation.sh; row 'all' is Table 1's GOPro run).
# Usage: bash scripts/reproduce/table3.sh [--gpus 0,1,2,3 | --gpus "" --jobs N] [--emit-slurm FILE] [--dry-run] [--rerun-stale]
# Environment: DATA OUTPUT SHOTS EPOCHS BACKBONE EXTRA_OPTS (as scripts/common.sh) and
#   ROWS (default: ce ce_con ce_sem_x1 ce_sem_x2 ce_sem_x1x2 all), DATASETS (default: the 11), SEEDS (default: 1 2 3).
# Finished runs are skipped, stale ones stop it (see --rerun-stale); run it again to retry failures. Then:
#   python -m tools.experiments.report "${OUTPUT:-output}" --tables table3
# The job engine and every option: python -m runs.jobs --help
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python}" -m runs.jobs table3 "$@"
