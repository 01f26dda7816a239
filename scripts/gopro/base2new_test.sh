#!/usr/bin/env bash
# GOPro, base-to-new: evaluate the last-epoch model on the new classes.  Usage: base2new_test.sh DATASET SEED
TRAINER=GOPro
CFG=${CFG:-vit_b16}
LOADEP=50
source "$(dirname "$0")/../common.sh"
main b2n_test "$@"
