#!/usr/bin/env bash
# Figure 3: t-SNE of the visual embeddings of the base-class test images (the paper's Figure 3).
# Usage: tsne.sh SEED [DATASET]      (DATASET default: eurosat)
#
# Embeds with the base-to-new checkpoints of seed SEED (train them first, e.g. with
# scripts/reproduce/fig3.sh) of the methods in $METHODS (default: "slip cocoop gopro", the
# paper's panels; zsclip needs no checkpoint). Writes $OUTPUT/figures/tsne_<DATASET>_seed<SEED>.png
# and the 2-D points beside it (.npz). See tools/experiments/tsne.py for the options.
source "$(dirname "$0")/../common.sh"

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "Usage: $0 SEED [DATASET]" >&2
    exit 2
fi
seed=$1 dataset=${2:-eurosat}
read -r -a methods <<< "${METHODS:-slip cocoop gopro}"
cd "$REPO" && exec "$PYTHON" -m tools.experiments.tsne --scripts-environment --dataset "$dataset" --seed "$seed" \
    --methods "${methods[@]}"
