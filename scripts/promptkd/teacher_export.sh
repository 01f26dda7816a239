#!/usr/bin/env bash
# PromptKD's teacher: write the text features of all classes (and its image prompts) into its run folder,
# unless current (a student does it itself where needed).  Usage: teacher_export.sh DATASET SEED
source "$(dirname "$0")/../common.sh"
expect_args 2 $# "DATASET SEED"
cd "$REPO" && "$PYTHON" -m tools.experiments.teacher_features --if-outdated --of promptkd "$@"
