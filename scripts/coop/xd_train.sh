#!/usr/bin/env bash
# CoOp, cross-dataset / domain generalisation: train on ImageNet, all classes.  Usage: xd_train.sh SEED
TRAINER=CoOp
CFG=${CFG:-vit_b16_ep50_ctxv1}
LOADEP=50
source "$(dirname "$0")/../common.sh"
main xd_train "$@"
