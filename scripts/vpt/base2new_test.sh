#!/usr/bin/env bash
# VPT, base-to-new: evaluate the last-epoch model on the new classes.  Usage: base2new_test.sh DATASET SEED
TRAINER=VPT
CFG=${CFG:-vit_b16_c2_ep5_batch4_4}
LOADEP=5
source "$(dirname "$0")/../common.sh"
main b2n_test "$@"
