#!/usr/bin/env bash
# Where GOPro's seed-to-seed spread comes from, on the synthetic world: GOPro with one thing switched
# off at a time (each loss term, P_v in the logits, per-view / token-wise ρ, ρ's initialisation,
# each extra view of L_sem, the contrastive BatchNorm), base-to-new and domain generalisation over
# the seeds, then one table: per setting base / new / HM, new per seed, DG (mean ± std over the seeds).
# Usage: bash bench/world_gopro_ablation.sh [SETTING ...]     (default: every setting below)
# Environment: WORLD (world_output), WORLD_SEEDS ("1 2 3 4 5 6 7 8 9"), WORLD_EPOCHS (10),
#   WORLD_JOBS (2 parallel runs), WORLD_PROTOCOLS ("b2n dg"; "b2n" alone is a fifth of the time),
#   PYTHON. Each setting has its own output root, $WORLD/gopro_ablation/<setting>/; finished runs are
#   skipped, so it can be stopped and rerun.
#   `make world-gopro-ablation` runs it. It is 11 x (the time of one GOPro method in `make world`).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
PYTHON=${PYTHON:-python}
WORLD=$(realpath -m "${WORLD:-world_output}")
SEEDS=${WORLD_SEEDS:-1 2 3 4 5 6 7 8 9}
DG_TARGETS="imagenetv2 imagenet_sketch imagenet_a imagenet_r"
PROTOCOLS=" ${WORLD_PROTOCOLS:-b2n dg} "
for protocol in $PROTOCOLS; do
  case $protocol in b2n | dg) ;; *) echo "Unknown protocol '$protocol' in WORLD_PROTOCOLS; choose from: b2n dg" >&2; exit 2 ;; esac
done

# setting -> TRAINER.GOPRO options that differ from our defaults (trainers/gopro.py), quoted as in
# EXTRA_OPTS (a shell command line: a list value keeps its quotes)
declare -A SETTINGS=(
  [default]=""
  [no_ce]="W_CE 0.0"
  [no_sem]="W_SEM 0.0"
  [no_con]="W_CON 0.0"
  [pv_out_of_logits]="PV_IN_LOGITS False"
  [rho_shared_by_views]="RHO_PER_VIEW False"
  [rho_not_tokenwise]="RHO_TOKENWISE False"
  [rho_init_zeros]="RHO_INIT zeros"
  [sem_without_moco]="SEM_VIEWS \"['augmix']\""
  [sem_without_augmix]="SEM_VIEWS \"['moco']\""
  [con_head_without_bn]="CON_HEAD_BN False"
)
ORDER="default no_ce no_sem no_con pv_out_of_logits rho_shared_by_views rho_not_tokenwise rho_init_zeros
       sem_without_moco sem_without_augmix con_head_without_bn"

chosen=("$@")
[ ${#chosen[@]} -gt 0 ] || chosen=($ORDER)
for setting in "${chosen[@]}"; do
  [ -n "${SETTINGS[$setting]+set}" ] || { echo "Unknown setting '$setting'; choose from:" $ORDER >&2; exit 2; }
done

export OMP_NUM_THREADS=1
"$PYTHON" -m tools.kit.build "$WORLD/world" --world
WORLD_OPTS=$("$PYTHON" -m tools.kit.build "$WORLD/world" --world --print-opts)
for setting in "${chosen[@]}"; do
  read -r -a pairs <<< "${SETTINGS[$setting]}"
  opts=()
  for ((i = 0; i < ${#pairs[@]}; i += 2)); do opts+=("TRAINER.GOPRO.${pairs[i]}" "${pairs[i+1]}"); done
  out="$WORLD/gopro_ablation/$setting"
  export DATA="$WORLD/world/DATA" OUTPUT="$out" EPOCHS="${WORLD_EPOCHS:-10}" PYTHON METHODS=gopro SEEDS
  export EXTRA_OPTS="$WORLD_OPTS ${opts[*]}"
  mkdir -p "$out"
  if [[ $PROTOCOLS == *" b2n "* ]]; then
    DATASETS=oxford_pets bash scripts/reproduce/table1.sh --gpus "" --jobs "${WORLD_JOBS:-2}" || true
  fi
  if [[ $PROTOCOLS == *" dg "* ]]; then
    DATASETS=$DG_TARGETS bash scripts/reproduce/table2.sh --gpus "" --jobs "${WORLD_JOBS:-2}" || true
  fi
done
specs=()
for setting in "${chosen[@]}"; do specs+=("$setting=${SETTINGS[$setting]}"); done
echo
"$PYTHON" bench/world_gopro_ablation_table.py "$WORLD/gopro_ablation" --seeds "$SEEDS" "${specs[@]}"
