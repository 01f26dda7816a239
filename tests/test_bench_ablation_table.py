"""bench/world_gopro_ablation_table.py: one row per setting from the runs of its own tree, the HM of
the means, every seed's new-class value, DG cells, and partial or missing runs said as such."""
from __future__ import annotations

import subprocess
import sys

from conftest import REPO
from runs.layout import Layout
from runs.results import DG_TARGETS
from test_report import GOPRO, b2n_logs, row_of, write_log

sys.path.insert(0, str(REPO / "bench"))
from world_gopro_ablation_table import TITLE  # noqa: E402


def test_one_row_per_setting_with_seeds_hm_and_dg(tmp_path):
    default, zeros = Layout(tmp_path / "default"), Layout(tmp_path / "rho_init_zeros")
    for seed, (base, new) in enumerate([(50.0, 40.0), (52.0, 50.0)], start=1):
        b2n_logs(default, GOPRO, "oxford_pets", seed, base, new)
        write_log(default.xd_run(GOPRO, "imagenet", seed).log, 30.0 + seed, train=True)
        for i, target in enumerate(DG_TARGETS):
            write_log(default.xd_run(GOPRO, target, seed).log, 20.0 + i, train=False)
    b2n_logs(zeros, GOPRO, "oxford_pets", 1, 49.0, 53.0)   # seed 2 not run
    proc = subprocess.run([sys.executable, "bench/world_gopro_ablation_table.py", str(tmp_path), "--seeds", "1 2",
                           "default=", "rho_init_zeros=RHO_INIT zeros"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert row_of(proc.stdout, TITLE, "default")[1:] == [
        "(our defaults)", "51.00 ± 1.00", "45.00 ± 5.00", f"{2 * 51 * 45 / 96:.2f}", "40.0 50.0",
        "31.50 ± 0.50", "20.00 ± 0.00", "21.00 ± 0.00", "22.00 ± 0.00", "23.00 ± 0.00"]
    assert row_of(proc.stdout, TITLE, "rho_init_zeros")[1:] == [
        "RHO_INIT zeros", "49.00 ± 0.00 (1/2)", "53.00 ± 0.00 (1/2)", f"{2 * 49 * 53 / 102:.2f}", "53.0 –",
        "–", "–", "–", "–", "–"]
