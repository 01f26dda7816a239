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
# Zero-weight branches are not computed (trainers/gopro.py). Keep the row names in step with
# ABLATION_ROWS in tools/experiments/results.py (tools/experiments/report.py reads the trees from there).
TRAINER=GOPro
CFG=${CFG:-vit_b16}
LOADEP=50
source "$(dirname "$0")/../common.sh"

expect_args 3 $# "ROW DATASET SEED   (ROW: ce ce_con ce_sem_x1 ce_sem_x2 ce_sem_x1x2 all)"
row=$1 dataset=$2 seed=$3
case $row in
    ce)          switches=(W_CE 1.0 W_CON 0.0 W_SEM 0.0) ;;
    ce_con)      switches=(W_CE 1.0 W_CON 1.0 W_SEM 0.0) ;;
    ce_sem_x1)   switches=(W_CE 1.0 W_CON 0.0 W_SEM 1.0 SEM_VIEWS "['moco']") ;;
    ce_sem_x2)   switches=(W_CE 1.0 W_CON 0.0 W_SEM 1.0 SEM_VIEWS "['augmix']") ;;
    ce_sem_x1x2) switches=(W_CE 1.0 W_CON 0.0 W_SEM 1.0 SEM_VIEWS "['moco', 'augmix']") ;;
    all)         switches=(W_CE 1.0 W_CON 1.0 W_SEM 1.0 SEM_VIEWS "['moco', 'augmix']") ;;
    *) echo "Unknown ablation row '$row': use one of ce ce_con ce_sem_x1 ce_sem_x2 ce_sem_x1x2 all" >&2; exit 2 ;;
esac
# The full-loss row is GOPro's default configuration: it shares the Table 1 run instead of repeating it.
[ "$row" = all ] || OUTPUT=$OUTPUT/ablation/$row

opts=()
for ((i = 0; i < ${#switches[@]}; i += 2)); do
    opts+=("TRAINER.GOPRO.${switches[i]}" "${switches[i+1]}")
done
b2n_train_test "$dataset" "$seed" "${opts[@]}"
