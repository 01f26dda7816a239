#!/usr/bin/env bash
# IVLP: evaluate the ImageNet model on a target dataset (cross-dataset or ImageNet variant).
# Loads epoch 5, the last of the 5-epoch config (upstream's script asks for epoch 2, which is never saved).
# Usage: xd_test.sh DATASET SEED
TRAINER=IVLP
CFG=${CFG:-vit_b16_c2_ep5_batch4_2+2ctx}
LOADEP=5
source "$(dirname "$0")/../common.sh"
main xd_test "$@"
