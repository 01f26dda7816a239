#!/usr/bin/env bash
# MaPLe, cross-dataset / domain generalisation: train on ImageNet, all classes.  Usage: xd_train.sh SEED
TRAINER=MaPLe
CFG=${CFG:-vit_b16_c2_ep5_batch4_2ctx_cross_datasets}
LOADEP=2
source "$(dirname "$0")/../common.sh"
main xd_train "$@"
