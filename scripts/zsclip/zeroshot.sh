#!/usr/bin/env bash
# Zero-shot CLIP on one dataset.  Usage: zeroshot.sh DATASET [all|base|new]
# Output: $OUTPUT/zsclip/<SUB>/<DATASET>/log.txt (deterministic: no seed, no training).
source "$(dirname "$0")/../common.sh"
run_step zsclip zeroshot "$@"
