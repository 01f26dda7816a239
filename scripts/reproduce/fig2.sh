#!/usr/bin/env bash
# Figure 2: GOPro base-to-new against the number of context tokens M (scripts/gopro/nctx.sh).
# Usage: bash scripts/reproduce/fig2.sh [--gpus 0,1,2,3 | --gpus "" --jobs N] [--emit-slurm FILE] [--dry-run] [--rerun-stale]
# Environment: DATA OUTPUT SHOTS EPOCHS BACKBONE EXTRA_OPTS (as scripts/common.sh) and
#   NCTX (default: 1 2 4 8 16 init; init = M 4 from "a photo of a" = Table 1's GOPro run), DATASETS (default: the 11), SEEDS (default: 1 2 3).
# Finished runs are skipped, stale ones stop it (see --rerun-stale); run it again to retry failures. Then:
#   python -m tools.experiments.report "${OUTPUT:-output}" --tables fig2
# The job engine and every option: python -m runs.jobs --help
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python}" -m runs.jobs fig2 "$@"
