#!/usr/bin/env bash
# PromptKD, base-to-new: distil the student on unlabeled training images of all classes (the teacher is
# trained first where it is not yet, its features exported where missing).  Usage: base2new_train.sh DATASET SEED
source "$(dirname "$0")/../common.sh"
run_step promptkd base2new_train "$@"
