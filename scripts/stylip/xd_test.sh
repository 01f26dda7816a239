#!/usr/bin/env bash
# StyLIP: evaluate the ImageNet model on a target dataset (cross-dataset or ImageNet variant).
# Usage: xd_test.sh DATASET SEED
TRAINER=StyLIP
CFG=${CFG:-vit_b16_xd}
LOADEP=50
source "$(dirname "$0")/../common.sh"
main xd_test "$@"
