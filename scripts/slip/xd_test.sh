#!/usr/bin/env bash
# SLIP: evaluate the ImageNet model on a target dataset (cross-dataset or ImageNet variant).
# Usage: xd_test.sh DATASET SEED
TRAINER=SLIP
CFG=${CFG:-vit_b16_xd}
LOADEP=10
source "$(dirname "$0")/../common.sh"
main xd_test "$@"
