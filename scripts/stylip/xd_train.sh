#!/usr/bin/env bash
# StyLIP, cross-dataset / domain generalisation: train on ImageNet, all classes.  Usage: xd_train.sh SEED
TRAINER=StyLIP
CFG=${CFG:-vit_b16_xd}
LOADEP=50
source "$(dirname "$0")/../common.sh"
main xd_train "$@"
