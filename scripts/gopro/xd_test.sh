#!/usr/bin/env bash
# GOPro: evaluate the ImageNet model on a target dataset (cross-dataset or ImageNet variant).
# Usage: xd_test.sh DATASET SEED
TRAINER=GOPro
CFG=${CFG:-vit_b16_xd}
LOADEP=50
source "$(dirname "$0")/../common.sh"
main xd_test "$@"
