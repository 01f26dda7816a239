"""tools/experiments/parse_test_res.py: upstream's command line and printed format (upstream Dassl's tools/parse_test_res.py)."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

from conftest import REPO
from test_report import result_block, write_log


def parse(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.experiments.parse_test_res", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def seeds(directory: Path, values, train: bool = True) -> Path:
    for seed, value in enumerate(values, start=1):
        write_log(directory / f"seed{seed}" / "log.txt", value, train=train)
    return directory


def test_training_logs_print_each_file_and_the_mean_and_population_std(tmp_path):
    runs = seeds(tmp_path / "vit_b16", [80.0, 82.0, 84.0])
    proc = parse(runs)
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == [
        f"Parsing files in {runs}",
        f"file: {runs}/seed1/log.txt. accuracy: 80.00%. ",
        f"file: {runs}/seed2/log.txt. accuracy: 82.00%. ",
        f"file: {runs}/seed3/log.txt. accuracy: 84.00%. ",
        "===",
        f"Summary of directory: {runs}",
        "* accuracy: 82.00% +- 1.63%",   # np.std (ddof 0) of 80, 82, 84 = sqrt(8/3)
        "===",
    ]


def test_ci95_is_1_96_std_over_sqrt_n(tmp_path):
    runs = seeds(tmp_path / "runs", [80.0, 82.0, 84.0])
    expected = 1.96 * math.sqrt(8 / 3) / math.sqrt(3)  # 1.85
    assert f"* accuracy: 82.00% +- {expected:.2f}%" in parse(runs, "--ci95").stdout


def test_the_end_signal_decides_what_counts(tmp_path):
    runs = tmp_path / "runs"
    # A per-epoch evaluation before "Finish training" is not the result; the one after it is.
    (runs / "seed1").mkdir(parents=True)
    (runs / "seed1" / "log.txt").write_text(result_block(10.0) + "Finish training\n" + result_block(70.0))
    write_log(runs / "seed2" / "log.txt", 60.0, train=False)  # an evaluation log: no "Finish training"
    train_mode = parse(runs).stdout
    assert "accuracy: 70.00%. " in train_mode and "No result in" in train_mode and "* accuracy: 70.00% +- 0.00%" in train_mode
    test_mode = parse(runs, "--test-log").stdout
    # With --test-log the search starts at the first "=> result" and the last match wins.
    assert "seed1/log.txt. accuracy: 70.00%. " in test_mode and "seed2/log.txt. accuracy: 60.00%. " in test_mode
    assert "* accuracy: 65.00% +- 5.00%" in test_mode


def test_maple_spelling_keyword_and_ignored_entries(tmp_path):
    runs = tmp_path / "runs"
    (runs / "seed1").mkdir(parents=True)
    (runs / "seed1" / "log.txt").write_text("Finished training\n" + result_block(50.0))
    (runs / "seed1" / "log.txt-2023-01-01-00-00-00").write_text("Finish training\n" + result_block(99.0))
    seeds(runs / ".hidden", [1.0])
    (runs / "notes.md").write_text("not a run")
    out = parse(runs, "--keyword", "macro_f1").stdout
    assert out.count("file: ") == 1 and "macro_f1: 49.00%. " in out and "* macro_f1: 49.00% +- 0.00%" in out


def test_missing_logs_are_reported_and_the_rest_summarised(tmp_path):
    runs = seeds(tmp_path / "runs", [80.0, 90.0])
    (runs / "seed3").mkdir()
    proc = parse(runs)
    assert proc.returncode == 0
    assert f"Missing log: {runs}/seed3/log.txt" in proc.stdout and "* accuracy: 85.00% +- 5.00%" in proc.stdout
    empty = tmp_path / "empty"
    (empty / "seed1").mkdir(parents=True)
    nothing = parse(empty)
    assert nothing.returncode == 1 and f"Nothing found in {empty}" in nothing.stdout
    not_a_folder = parse(tmp_path / "absent")
    assert not_a_folder.returncode == 2 and "is not a folder" in not_a_folder.stderr


def test_multi_exp_averages_the_experiment_means(tmp_path):
    root = tmp_path / "evaluation"
    seeds(root / "caltech101", [90.0, 92.0], train=False)
    seeds(root / "dtd", [40.0, 44.0], train=False)
    (root / "eurosat" / "seed1").mkdir(parents=True)  # not run yet: reported, left out of the average
    proc = parse(root, "--test-log", "--multi-exp")
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0
    assert f"Summary of directory: {root / 'caltech101'}" in lines and "* accuracy: 91.00% +- 1.00%" in lines
    assert f"Summary of directory: {root / 'dtd'}" in lines and "* accuracy: 42.00% +- 2.00%" in lines
    assert lines[-2:] == ["Average performance", "* accuracy: 66.50%"]
