#!/usr/bin/env bash
# MMRL, cross-dataset / domain generalisation: train on ImageNet, all classes.  Usage: xd_train.sh SEED
source "$(dirname "$0")/../common.sh"
run_step mmrl xd_train "$@"
