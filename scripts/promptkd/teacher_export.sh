#!/usr/bin/env bash
# PromptKD's teacher: write the text features of all classes (and its image prompts) into its run folder.
# Usage: teacher_export.sh DATASET SEED
source "$(dirname "$0")/../common.sh"
run_step promptkd teacher_export "$@"
