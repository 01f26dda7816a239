#!/usr/bin/env bash
# Figure 3: t-SNE of EuroSAT base-class test embeddings. Trains each method base-to-new, then scripts/gopro/tsne.sh.
# Usage: bash scripts/reproduce/fig3.sh [--gpus 0,1,2,3 | --gpus "" --jobs N] [--emit-slurm FILE] [--dry-run] [--rerun-stale]
# Environment: DATA OUTPUT SHOTS EPOCHS BACKBONE EXTRA_OPTS (as scripts/common.sh) and
#   METHODS (default: slip cocoop gopro; zsclip = frozen CLIP, no training), DATASETS (default: eurosat), SEEDS (default: 1).
# Finished runs are skipped, stale ones stop it (see --rerun-stale); run it again to retry failures. The figure is written to
#   $OUTPUT/figures/tsne_<dataset>_seed<seed>.png (and the 2-D points to the .npz beside it).
# The job engine and every option: python -m runs.jobs --help
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python}" -m runs.jobs fig3 "$@"
