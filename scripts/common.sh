#!/usr/bin/env bash
# Shared by scripts/run.sh and scripts/<method>/*.sh: `run_step METHOD STEP ARGS...` runs one protocol
# step of a method of the registry (tools/experiments/methods.py). Which train.py runs a step makes,
# and where their folders are, comes from Python (tools/experiments/method_runs.py, layout.py);
# this file adds the caller's options, skips finished runs and deals with stale ones.
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
#   PYTHON      interpreter (default: python)
#   RERUN_STALE 1: a folder holding a run with other settings is moved aside (to
#               <folder>.stale-<time>) and the run starts afresh; unset: the script stops and names them
#   PRINT_TRAIN_ARGS  1: print each run's train.py arguments (a count, then the arguments, each
#               NUL-terminated) instead of running anything; tools/experiments/jobs.py reads them
# A run is skipped when its folder holds its final result made with the same settings (train.py
# --check-finished, see tools/experiments/run_identity.py); an unfinished one resumes.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=${DATA:-$REPO/DATA}
OUTPUT=${OUTPUT:-$REPO/output}
SHOTS=${SHOTS:-16}
XD_SOURCE=${XD_SOURCE:-imagenet}
PYTHON=${PYTHON:-python}

split_extra_opts() {  # EXTRA_OPTS → the array EXTRA_ARGS, split like a shell would (quotes keep spaces)
    EXTRA_ARGS=()
    [ -n "${EXTRA_OPTS:-}" ] || return 0
    # xargs splits on blanks and honours single quotes, double quotes and backslashes; unlike
    # `eval set -- $EXTRA_OPTS` it runs nothing and leaves values such as (32,32) alone.
    if ! printf '%s' "$EXTRA_OPTS" | xargs printf '' 2>/dev/null; then
        echo "EXTRA_OPTS has an unmatched quote: $EXTRA_OPTS" >&2
        exit 2
    fi
    mapfile -d '' -t EXTRA_ARGS < <(printf '%s' "$EXTRA_OPTS" | xargs printf '%s\0')
    if (( ${#EXTRA_ARGS[@]} % 2 )); then
        echo "EXTRA_OPTS must be KEY VALUE pairs, got ${#EXTRA_ARGS[@]} words: $EXTRA_OPTS" \
             "(quote a value with spaces: KEY 'a b')" >&2
        exit 2
    fi
}
split_extra_opts

# Options every run gets: the epoch override and the caller's extras.
COMMON_OPTS=()
if [ -n "${EPOCHS:-}" ]; then COMMON_OPTS+=(OPTIM.MAX_EPOCH "$EPOCHS"); fi
COMMON_OPTS+=("${EXTRA_ARGS[@]}")

expect_args() {  # expect_args COUNT|MIN-MAX "$#" USAGE: stop with the usage line on a wrong argument count
    local low=${1%-*} high=${1#*-}
    if [ "$2" -lt "$low" ] || [ "$2" -gt "$high" ]; then
        echo "Usage: $(basename "$0") $3" >&2
        exit 2
    fi
}

check_folder() {  # check_folder DIR TRAIN_PY_ARGS...: 0 = DIR holds this run, finished; 1 = run it
    local dir=$1; shift
    local state rc=0
    state=$(cd "$REPO" && "$PYTHON" train.py --check-finished "$@") || rc=$?
    case $rc in
        0) echo "Results exist at $dir (skip this job)"; return 0 ;;
        3) ;;  # stale: below
        *) return 1 ;;  # to run (a failing check fails again, with its message, in the run itself)
    esac
    if [ -z "${RERUN_STALE:-}" ]; then
        echo "${state##*$'\n'}" >&2
        echo "Stop: $dir holds a run made with other settings than these (listed above)." \
             "Set RERUN_STALE=1 to move it aside and run again, or choose another OUTPUT." >&2
        exit 3
    fi
    local aside
    aside="$dir.stale-$(date +%Y%m%d-%H%M%S)"
    mv "$dir" "$aside"
    echo "${state##*$'\n'}: moved to $aside, running again"
    return 1
}

run_train_py() {  # run_train_py OUTDIR [train.py args...]: run train.py unless OUTDIR holds this run, finished
    local dir=$1; shift
    local backbone=()
    [ -n "${BACKBONE:-}" ] && backbone=(--backbone "$BACKBONE")
    local args=("${backbone[@]}" --output-dir "$dir" "$@" "${COMMON_OPTS[@]}")
    if [ -n "${PRINT_TRAIN_ARGS:-}" ]; then
        printf '%s\0' "${#args[@]}" "${args[@]}"
        return 0
    fi
    # Only a folder with a run in it (recorded, or the log of an older one) needs the (seconds-long) check.
    if { [ -f "$dir/run.json" ] || [ -f "$dir/log.txt" ]; } && check_folder "$dir" "${args[@]}"; then
        return 0
    fi
    (cd "$REPO" && "$PYTHON" train.py "${args[@]}")
}

run_step() {  # run_step METHOD STEP ARGS...: the step's train.py runs (method_runs checks the arguments first)
    local runs
    runs=$(cd "$REPO" && "$PYTHON" -m tools.experiments.method_runs --script "$(basename "$0")" --data "$DATA" \
        --output "$OUTPUT" --shots "$SHOTS" --xd-source "$XD_SOURCE" --cfg "${CFG:-}" --backbone "${BACKBONE:-}" "$@") || exit $?
    eval "$runs"  # run_train_py FOLDER ARGS..., one line per run, every word quoted by Python
}
