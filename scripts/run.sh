#!/usr/bin/env bash
# Any method of the registry (runs/methods.py), any protocol step: what scripts/<method>/*.sh
# do, for every method, including one that has only its registry entry.
# Usage: run.sh METHOD STEP ARGS...
#   base2new_train DATASET SEED    train on the base classes
#   base2new_test DATASET SEED     evaluate the last epoch on the new classes
#   xd_train SEED                  train on ImageNet (all classes), for cross-dataset / domain generalisation
#   xd_test DATASET SEED           evaluate that model on a target dataset
#   fewshot DATASET SHOTS SEED     train on SHOTS images of every class, then test all classes (same run)
#   msdg DATASET TARGET SEED       train on every domain but TARGET (PACS, VLCS, ...), then test TARGET
#   zeroshot DATASET [all|base|new]        zero-shot CLIP (METHOD zsclip)
#   SWEEP SETTING DATASET SEED     a sweep of the method (GOPro: ablation ROW, nctx M)
# e.g. bash scripts/run.sh kgcoop base2new_train dtd 1. Environment: as scripts/common.sh.
source "$(dirname "$0")/common.sh"
expect_args 2-5 $# "METHOD STEP ARGS...   (see the header of scripts/run.sh)"
run_step "$@"
