#!/usr/bin/env bash
# MaPLe: evaluate the ImageNet model on a target dataset (cross-dataset or ImageNet variant).
# Usage: xd_test.sh DATASET SEED
source "$(dirname "$0")/../common.sh"
run_step maple xd_test "$@"
