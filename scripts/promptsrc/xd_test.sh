#!/usr/bin/env bash
# PromptSRC: evaluate the ImageNet model on a target dataset (cross-dataset or ImageNet variant).
# Usage: xd_test.sh DATASET SEED
TRAINER=PromptSRC
CFG=${CFG:-vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets}
LOADEP=20
source "$(dirname "$0")/../common.sh"
main xd_test "$@"
