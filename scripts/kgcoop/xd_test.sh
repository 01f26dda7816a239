#!/usr/bin/env bash
# KgCoOp: evaluate the ImageNet model on a target dataset (cross-dataset or ImageNet variant).
# Usage: xd_test.sh DATASET SEED
TRAINER=KgCoOp
CFG=${CFG:-vit_b16_ep100_ctxv1}
LOADEP=100
source "$(dirname "$0")/../common.sh"
main xd_test "$@"
