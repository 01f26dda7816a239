#!/usr/bin/env bash
# ProGrad, base-to-new: evaluate the last-epoch model on the new classes.  Usage: base2new_test.sh DATASET SEED  (ImageNet: the 50-epoch config)
source "$(dirname "$0")/../common.sh"
run_step prograd base2new_test "$@"
