#!/usr/bin/env bash
# SLIP, cross-dataset / domain generalisation: train on ImageNet, all classes.  Usage: xd_train.sh SEED
TRAINER=SLIP
CFG=${CFG:-vit_b16_xd}
LOADEP=10
source "$(dirname "$0")/../common.sh"
main xd_train "$@"
