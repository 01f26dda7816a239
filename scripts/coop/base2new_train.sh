#!/usr/bin/env bash
# CoOp, base-to-new: train on the base classes.  Usage: base2new_train.sh DATASET SEED
TRAINER=CoOp
CFG=${CFG:-vit_b16_ctxv1}
LOADEP=200
if [ "$1" = imagenet ]; then CFG=${CFG/vit_b16_ctxv1/vit_b16_ep50_ctxv1}; LOADEP=50; fi  # ImageNet: 50 epochs
source "$(dirname "$0")/../common.sh"
main b2n_train "$@"
