#!/usr/bin/env bash
# MaPLe: evaluate the ImageNet model on a target dataset (cross-dataset or ImageNet variant).
# Usage: xd_test.sh DATASET SEED
TRAINER=MaPLe
CFG=${CFG:-vit_b16_c2_ep5_batch4_2ctx_cross_datasets}
LOADEP=2
source "$(dirname "$0")/../common.sh"
main xd_test "$@"
