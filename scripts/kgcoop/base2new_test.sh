#!/usr/bin/env bash
# KgCoOp, base-to-new: evaluate the last-epoch model on the new classes.  Usage: base2new_test.sh DATASET SEED
TRAINER=KgCoOp
CFG=${CFG:-vit_b16_ep100_ctxv1}
LOADEP=100
source "$(dirname "$0")/../common.sh"
main b2n_test "$@"
