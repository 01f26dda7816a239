#!/usr/bin/env bash
# VPT, cross-dataset / domain generalisation: train on ImageNet, all classes.  Usage: xd_train.sh SEED
TRAINER=VPT
CFG=${CFG:-vit_b16_c2_ep5_batch4_4}
LOADEP=5
source "$(dirname "$0")/../common.sh"
main xd_train "$@"
