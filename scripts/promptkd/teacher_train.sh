#!/usr/bin/env bash
# PromptKD's teacher: PromptSRC at ViT-L/14 (its config names the backbone), trained on the base classes.
# Usage: teacher_train.sh DATASET SEED
source "$(dirname "$0")/../common.sh"
run_step promptkd teacher_train "$@"
