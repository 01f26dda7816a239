#!/usr/bin/env bash
# CoCoOp, base-to-new: evaluate the last-epoch model on the new classes.  Usage: base2new_test.sh DATASET SEED
TRAINER=CoCoOp
CFG=${CFG:-vit_b16_c4_ep10_batch1_ctxv1}
LOADEP=10
source "$(dirname "$0")/../common.sh"
main b2n_test "$@"
