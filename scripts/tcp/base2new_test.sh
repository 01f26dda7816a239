#!/usr/bin/env bash
# TCP, base-to-new: evaluate the last-epoch model on the new classes.  Usage: base2new_test.sh DATASET SEED
source "$(dirname "$0")/../common.sh"
run_step tcp base2new_test "$@"
