#!/usr/bin/env bash
# ProGrad: evaluate the ImageNet model on a target dataset (cross-dataset or ImageNet variant).
# Usage: xd_test.sh DATASET SEED
TRAINER=ProGrad
CFG=${CFG:-vit_b16_ep50}
LOADEP=50
source "$(dirname "$0")/../common.sh"
main xd_test "$@"
