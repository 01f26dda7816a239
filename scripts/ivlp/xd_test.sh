#!/usr/bin/env bash
# IVLP: evaluate the ImageNet model on a target dataset (cross-dataset or ImageNet variant).
# Loads the last epoch (upstream's script asks for epoch 2, which is never saved).
# Usage: xd_test.sh DATASET SEED
source "$(dirname "$0")/../common.sh"
run_step ivlp xd_test "$@"
