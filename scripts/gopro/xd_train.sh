#!/usr/bin/env bash
# GOPro, cross-dataset / domain generalisation: train on ImageNet, all classes.  Usage: xd_train.sh SEED
source "$(dirname "$0")/../common.sh"
run_step gopro xd_train "$@"
