#!/usr/bin/env bash
# PromptSRC, base-to-new: evaluate the last-epoch model on the new classes.  Usage: base2new_test.sh DATASET SEED
TRAINER=PromptSRC
CFG=${CFG:-vit_b16_c2_ep20_batch4_4+4ctx}
LOADEP=20
source "$(dirname "$0")/../common.sh"
main b2n_test "$@"
