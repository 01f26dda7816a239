#!/usr/bin/env bash
# CoCoOp, cross-dataset / domain generalisation: train on ImageNet, all classes.  Usage: xd_train.sh SEED
TRAINER=CoCoOp
CFG=${CFG:-vit_b16_c4_ep10_batch1_ctxv1}
LOADEP=10
source "$(dirname "$0")/../common.sh"
main xd_train "$@"
