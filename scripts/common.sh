#!/usr/bin/env bash
# Shared by scripts/run.sh and scripts/<method>/*.sh: `run_step METHOD STEP ARGS...` runs one protocol
# step of a method of the registry (runs/methods.py) through runs/steps.py, which computes the step's
# train.py runs with the options below, skips finished runs, deals with stale ones and runs the rest.
#
# Environment overrides (defaults = the paper's setting):
#   DATA        dataset root                          (default: <repo>/DATA)
#   OUTPUT      output root                           (default: <repo>/output)
#   SHOTS       images per class                      (default: 16)
#   EPOCHS      OPTIM.MAX_EPOCH override (evaluations load the last epoch of their training run)
#   BACKBONE    MODEL.BACKBONE.NAME override (e.g. ViT-B/32)
#   CFG         method config name under configs/trainers/<TRAINER>/ (default: the registry's)
#   XD_SOURCE   source dataset of the cross-dataset runs (default: imagenet)
#   EXTRA_OPTS  extra "KEY VALUE" pairs for train.py, quoted like a shell command line
#               (e.g. EXTRA_OPTS="TRAINER.GOPRO.CTX_INIT 'a photo of a' OPTIM.LR 0.01")
#   TEACHER_BACKBONE  a distilled method's (PromptKD's) teacher backbone (default: its config's, ViT-L/14;
#               BACKBONE changes the student only)
#   TEACHER_OPTS      "KEY VALUE" pairs for the teacher's runs only, after EXTRA_OPTS
#               (e.g. TEACHER_OPTS="MODEL.BACKBONE.PATH ~/clip" where EXTRA_OPTS names the student's weights file)
#   PYTHON      interpreter (default: python)
#   RERUN_STALE 1: a folder holding a run with other settings is moved aside (to
#               <folder>.stale-<time>) and the run starts afresh; unset: the script stops (exit 3) and names them
# A run is skipped when its folder holds its final result made with the same settings (see
# runs/identity.py); an unfinished one resumes. Wrong arguments exit with status 2.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python}

expect_args() {  # expect_args COUNT|MIN-MAX "$#" USAGE: stop with the usage line on a wrong argument count
    local low=${1%-*} high=${1#*-}
    if [ "$2" -lt "$low" ] || [ "$2" -gt "$high" ]; then
        echo "Usage: $(basename "$0") $3" >&2
        exit 2
    fi
}

run_step() {  # run_step METHOD STEP ARGS...: the step, in Python (runs/steps.py)
    cd "$REPO" && exec "$PYTHON" -m runs.steps --script "$(basename "$0")" "$@"
}
