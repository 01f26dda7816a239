#!/usr/bin/env bash
# GOPro, cross-dataset / domain generalisation: train on ImageNet, all classes.  Usage: xd_train.sh SEED
TRAINER=GOPro
CFG=${CFG:-vit_b16_xd}
LOADEP=50
source "$(dirname "$0")/../common.sh"
main xd_train "$@"
