#!/usr/bin/env bash
# KgCoOp, base-to-new: train on the base classes.  Usage: base2new_train.sh DATASET SEED
TRAINER=KgCoOp
CFG=${CFG:-vit_b16_ep100_ctxv1}
LOADEP=100
source "$(dirname "$0")/../common.sh"
main b2n_train "$@"
