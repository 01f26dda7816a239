#!/usr/bin/env bash
# CoPrompt, cross-dataset / domain generalisation: train on ImageNet, all classes.  Usage: xd_train.sh SEED
source "$(dirname "$0")/../common.sh"
run_step coprompt xd_train "$@"
