#!/usr/bin/env bash
# CoOp, base-to-new: train on the base classes.  Usage: base2new_train.sh DATASET SEED  (ImageNet: the 50-epoch config)
source "$(dirname "$0")/../common.sh"
run_step coop base2new_train "$@"
