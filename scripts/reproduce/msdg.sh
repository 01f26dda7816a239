#!/usr/bin/env bash
# Multi-source domain generalisation, leave one domain out, over PACS, VLCS, OfficeHome and DomainNet:
# for each held-out (target) domain, one run per method and seed trains on the other domains (all
# classes, all images, the method's cross-dataset config), then tests on the target domain.
# Usage: bash scripts/reproduce/msdg.sh [--gpus 0,1,2,3 | --gpus "" --jobs N] [--emit-slurm FILE] [--dry-run] [--rerun-stale]
# Environment: DATA OUTPUT EPOCHS BACKBONE EXTRA_OPTS (as scripts/common.sh) and
#   METHODS (default: the paper's prompt learners), DATASETS (default: pacs vlcs office_home_dg domainnet),
#   SEEDS (default: 1 2 3).
# Finished runs are skipped, stale ones stop it (see --rerun-stale); run it again to retry failures. Then:
#   python -m tools.experiments.report "${OUTPUT:-output}" --tables msdg
# The job engine and every option: python -m runs.jobs --help
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python}" -m runs.jobs msdg "$@"
