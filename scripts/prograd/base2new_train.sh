#!/usr/bin/env bash
# ProGrad, base-to-new: train on the base classes.  Usage: base2new_train.sh DATASET SEED  (ImageNet: the 50-epoch config)
source "$(dirname "$0")/../common.sh"
run_step prograd base2new_train "$@"
