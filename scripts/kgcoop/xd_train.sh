#!/usr/bin/env bash
# KgCoOp, cross-dataset / domain generalisation: train on ImageNet, all classes.  Usage: xd_train.sh SEED
TRAINER=KgCoOp
CFG=${CFG:-vit_b16_ep100_ctxv1}
LOADEP=100
source "$(dirname "$0")/../common.sh"
main xd_train "$@"
