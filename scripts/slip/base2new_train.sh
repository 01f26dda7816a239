#!/usr/bin/env bash
# SLIP, base-to-new: train on the base classes.  Usage: base2new_train.sh DATASET SEED
TRAINER=SLIP
CFG=${CFG:-vit_b16}
LOADEP=10
source "$(dirname "$0")/../common.sh"
b2n_train "$1" "$2"
