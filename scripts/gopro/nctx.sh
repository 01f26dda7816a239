#!/usr/bin/env bash
# GOPro prompt-length sweep (Figure 2, methods spec 8.7): base-to-new with M context tokens.
# Usage: nctx.sh M DATASET SEED
#
#   M = 1 2 4 8 16   random context (CTX_INIT ""), output tree $OUTPUT/nctx/m<M>/base2new/...
#   M = init         the default M = 4 from "a photo of a": the Table 1 GOPro run ($OUTPUT/base2new/...)
#
# Keep the points in step with NCTX_POINTS in tools/experiments/results.py (tools/experiments/report.py plots from there).
TRAINER=GOPro
CFG=${CFG:-vit_b16}
LOADEP=50
source "$(dirname "$0")/../common.sh"

expect_args 3 $# "M DATASET SEED   (M: a positive number of tokens, or 'init')"
m=$1 dataset=$2 seed=$3
if [ "$m" = init ]; then
    opts=(TRAINER.GOPRO.N_CTX 4 TRAINER.GOPRO.CTX_INIT "a photo of a")
elif [[ $m =~ ^[1-9][0-9]*$ ]]; then
    opts=(TRAINER.GOPRO.N_CTX "$m" TRAINER.GOPRO.CTX_INIT "")
    OUTPUT=$OUTPUT/nctx/m$m
else
    echo "Bad prompt length '$m': use a positive integer (e.g. 1 2 4 8 16) or 'init'" >&2
    exit 2
fi
b2n_train_test "$dataset" "$seed" "${opts[@]}"
