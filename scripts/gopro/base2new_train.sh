#!/usr/bin/env bash
# GOPro, base-to-new: train on the base classes.  Usage: base2new_train.sh DATASET SEED
TRAINER=GOPro
CFG=${CFG:-vit_b16}
LOADEP=50
source "$(dirname "$0")/../common.sh"
main b2n_train "$@"
