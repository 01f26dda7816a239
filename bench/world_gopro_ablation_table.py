"""One table of GOPro's one-at-a-time ablation on the world (``bench/world_gopro_ablation.sh``).

Per setting: base / new / HM over the seeds (HM of the means, as the field computes it), the
new-class accuracy of every seed (the spread the ablation is about), and the DG source and
targets, each mean ± population std over the seeds found. A cell with fewer seeds than asked says
how many it has; a protocol not run reads "–".

    python bench/world_gopro_ablation_table.py WORLD/gopro_ablation --seeds "1 2 3" \\
        default= "no_ce=W_CE 0.0" "rho_init_zeros=RHO_INIT zeros"
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tabulate import tabulate  # noqa: E402

from runs.layout import Layout, seed_stats  # noqa: E402
from runs.methods import METHODS  # noqa: E402
from runs.results import DG_TARGETS, SeedStats, harmonic_mean  # noqa: E402

GOPRO = METHODS["gopro"]
NO_RUNS = "–"
TITLE = "GOPro on the world, one setting at a time"


def cell(stats: SeedStats) -> str:
    if stats.n == 0:
        return NO_RUNS
    text = f"{stats.mean:.2f} ± {stats.std:.2f}"
    return text if stats.complete else f"{text} ({stats.n}/{stats.expected})"


def per_seed(values: Sequence[Optional[float]]) -> str:
    return " ".join(NO_RUNS if v is None else f"{v:.1f}" for v in values)


def setting_row(layout: Layout, name: str, options: str, seeds: Sequence[int]) -> List[str]:
    base_runs, new_runs = ([layout.b2n_run(GOPRO, phase, "oxford_pets", s) for s in seeds] for phase in ("base", "new"))
    base, new = seed_stats(base_runs), seed_stats(new_runs)
    hm = harmonic_mean(base.mean, new.mean)
    dg = [cell(seed_stats([layout.xd_run(GOPRO, d, s) for s in seeds])) for d in (layout.xd_source, *DG_TARGETS)]
    return [name, options or "(our defaults)", cell(base), cell(new), NO_RUNS if hm is None else f"{hm:.2f}",
            per_seed([run.result("accuracy") for run in new_runs]), *dg]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the ablation's root: one output folder per setting")
    parser.add_argument("--seeds", type=lambda text: [int(s) for s in text.split()], required=True,
                        help='the seeds, one argument: "1 2 3"')
    parser.add_argument("settings", nargs="+", metavar="NAME=OPTIONS",
                        help="each setting's folder name and the TRAINER.GOPRO options it changes")
    args = parser.parse_args(argv)
    rows = []
    for spec in args.settings:
        name, _, options = spec.partition("=")
        rows.append(setting_row(Layout(args.root / name), name, options, args.seeds))
    headers = ["setting", "changed (TRAINER.GOPRO)", "base", "new", "HM", f"new, seeds {' '.join(map(str, args.seeds))}",
               "DG source", "V2", "Sketch", "A", "R"]
    print(f"# {TITLE}\n\nSeeds {' '.join(map(str, args.seeds))}; mean ± population std over the seeds found.\n")
    print(tabulate(rows, headers, tablefmt="github", disable_numparse=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
