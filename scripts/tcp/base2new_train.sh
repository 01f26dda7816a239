#!/usr/bin/env bash
# TCP, base-to-new: train on the base classes.  Usage: base2new_train.sh DATASET SEED
source "$(dirname "$0")/../common.sh"
run_step tcp base2new_train "$@"
