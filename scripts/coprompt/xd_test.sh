#!/usr/bin/env bash
# CoPrompt: evaluate the ImageNet model on a target dataset (cross-dataset or ImageNet variant).
# Usage: xd_test.sh DATASET SEED
source "$(dirname "$0")/../common.sh"
run_step coprompt xd_test "$@"
