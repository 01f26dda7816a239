#!/usr/bin/env bash
# ProGrad, cross-dataset / domain generalisation: train on ImageNet, all classes.  Usage: xd_train.sh SEED
TRAINER=ProGrad
CFG=${CFG:-vit_b16_ep50}
LOADEP=50
source "$(dirname "$0")/../common.sh"
main xd_train "$@"
