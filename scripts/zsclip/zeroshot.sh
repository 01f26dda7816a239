#!/usr/bin/env bash
# Zero-shot CLIP on one dataset.  Usage: zeroshot.sh DATASET [all|base|new]
# Output: $OUTPUT/zsclip/<SUB>/<DATASET>/log.txt (deterministic: no seed, no training).
TRAINER=ZeroshotCLIP
CFG=${CFG:-vit_b16}
source "$(dirname "$0")/../common.sh"
expect_args 1-2 $# "DATASET [all|base|new]"
check_dataset "$1"
SUB=${2:-all}
run_train_py "$OUTPUT/zsclip/$SUB/$1" \
    --root "$DATA" --trainer ZeroshotCLIP \
    --dataset-config-file "$REPO/configs/datasets/$1.yaml" \
    --config-file "$REPO/configs/trainers/CoOp/$CFG.yaml" \
    --eval-only DATASET.SUBSAMPLE_CLASSES "$SUB"
