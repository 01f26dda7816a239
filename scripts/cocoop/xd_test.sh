#!/usr/bin/env bash
# CoCoOp: evaluate the ImageNet model on a target dataset (cross-dataset or ImageNet variant).
# Usage: xd_test.sh DATASET SEED
TRAINER=CoCoOp
CFG=${CFG:-vit_b16_c4_ep10_batch1_ctxv1}
LOADEP=10
source "$(dirname "$0")/../common.sh"
main xd_test "$@"
