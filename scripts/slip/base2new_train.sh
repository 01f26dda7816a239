#!/usr/bin/env bash
# SLIP, base-to-new: train on the base classes.  Usage: base2new_train.sh DATASET SEED
TRAINER=SLIP
CFG=${CFG:-vit_b16}
LOADEP=10
source "$(dirname "$0")/../common.sh"
main b2n_train "$@"
