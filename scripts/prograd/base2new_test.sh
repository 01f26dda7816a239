#!/usr/bin/env bash
# ProGrad, base-to-new: evaluate the last-epoch model on the new classes.  Usage: base2new_test.sh DATASET SEED
TRAINER=ProGrad
CFG=${CFG:-vit_b16}
LOADEP=200
if [ "$1" = imagenet ]; then CFG=${CFG/%vit_b16/vit_b16_ep50}; LOADEP=50; fi  # ImageNet: 50 epochs (as CoOp)
source "$(dirname "$0")/../common.sh"
main b2n_test "$@"
