#!/usr/bin/env bash
# PromptSRC, cross-dataset / domain generalisation: train on ImageNet, all classes.  Usage: xd_train.sh SEED
TRAINER=PromptSRC
CFG=${CFG:-vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets}
LOADEP=20
source "$(dirname "$0")/../common.sh"
main xd_train "$@"
