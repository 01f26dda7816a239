#!/usr/bin/env bash
# CoOp: evaluate the ImageNet model on a target dataset (cross-dataset or ImageNet variant).
# Usage: xd_test.sh DATASET SEED
TRAINER=CoOp
CFG=${CFG:-vit_b16_ep50_ctxv1}
LOADEP=50
source "$(dirname "$0")/../common.sh"
main xd_test "$@"
