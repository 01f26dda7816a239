#!/usr/bin/env bash
# PromptKD, base-to-new: evaluate the last-epoch student on the new classes.  Usage: base2new_test.sh DATASET SEED
source "$(dirname "$0")/../common.sh"
run_step promptkd base2new_test "$@"
