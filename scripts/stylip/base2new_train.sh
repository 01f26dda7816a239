#!/usr/bin/env bash
# StyLIP, base-to-new: train on the base classes.  Usage: base2new_train.sh DATASET SEED
TRAINER=StyLIP
CFG=${CFG:-vit_b16}
LOADEP=50
source "$(dirname "$0")/../common.sh"
main b2n_train "$@"
