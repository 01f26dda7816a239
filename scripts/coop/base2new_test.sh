#!/usr/bin/env bash
# CoOp, base-to-new: evaluate the last-epoch model on the new classes.  Usage: base2new_test.sh DATASET SEED  (ImageNet: the 50-epoch config)
source "$(dirname "$0")/../common.sh"
run_step coop base2new_test "$@"
