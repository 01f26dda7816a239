#!/usr/bin/env bash
# PromptSRC, base-to-new: train on the base classes.  Usage: base2new_train.sh DATASET SEED
TRAINER=PromptSRC
CFG=${CFG:-vit_b16_c2_ep20_batch4_4+4ctx}
LOADEP=20
source "$(dirname "$0")/../common.sh"
main b2n_train "$@"
