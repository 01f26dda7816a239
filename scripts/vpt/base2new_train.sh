#!/usr/bin/env bash
# VPT, base-to-new: train on the base classes.  Usage: base2new_train.sh DATASET SEED
TRAINER=VPT
CFG=${CFG:-vit_b16_c2_ep5_batch4_4}
LOADEP=5
source "$(dirname "$0")/../common.sh"
main b2n_train "$@"
