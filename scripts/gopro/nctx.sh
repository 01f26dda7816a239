#!/usr/bin/env bash
# GOPro prompt-length sweep (the paper's Figure 2): base-to-new with M context tokens.
# Usage: nctx.sh M DATASET SEED
#
#   M = 1 2 4 8 16   random context (CTX_INIT ""), output tree $OUTPUT/nctx/m<M>/base2new/...
#   M = init         the default M = 4 from "a photo of a": the Table 1 GOPro run ($OUTPUT/base2new/...)
#
# The points are defined in runs/methods.py (nctx_options, NCTX_POINTS).
source "$(dirname "$0")/../common.sh"
run_step gopro nctx "$@"
