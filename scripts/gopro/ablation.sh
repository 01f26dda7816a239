#!/usr/bin/env bash
# GOPro loss ablation (Table 3, methods spec 8.7): one row on one dataset and seed, base-to-new
# (train on the base classes, then evaluate the last epoch on the new ones).
# Usage: ablation.sh ROW DATASET SEED
#
#   ROW           W_CE W_CON W_SEM SEM_VIEWS         output tree
#   ce            1    0     0     -                 $OUTPUT/ablation/ce/base2new/...
#   ce_con        1    1     0     -                 $OUTPUT/ablation/ce_con/...
#   ce_sem_x1     1    0     1     [moco]            $OUTPUT/ablation/ce_sem_x1/...
#   ce_sem_x2     1    0     1     [augmix]          $OUTPUT/ablation/ce_sem_x2/...
#   ce_sem_x1x2   1    0     1     [moco, augmix]    $OUTPUT/ablation/ce_sem_x1x2/...
#   all           1    1     1     [moco, augmix]    $OUTPUT/base2new/... (= the Table 1 GOPro run)
#
# The rows are defined in tools/experiments/methods.py (ABLATION); zero-weight branches are not computed.
source "$(dirname "$0")/../common.sh"
expect_args 3 $# "ROW DATASET SEED   (ROW: ce ce_con ce_sem_x1 ce_sem_x2 ce_sem_x1x2 all)"
run_step gopro ablation "$@"
