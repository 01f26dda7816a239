#!/usr/bin/env python
"""Average the results of a folder of runs (the CoOp / MaPLe ``parse_test_res.py`` command line).

    python -m tools.experiments.parse_test_res output/base2new/train_base/dtd/shots_16/GOPro/vit_b16
    python -m tools.experiments.parse_test_res output/base2new/test_new/dtd/shots_16/GOPro/vit_b16 --test-log
    python -m tools.experiments.parse_test_res output/evaluation/GOPro/vit_b16_xd_16shots --test-log --multi-exp

``DIR/<run>/log.txt`` is read for every non-hidden entry ``<run>`` of DIR (usually ``seed1`` ...).
The value is the last ``* <keyword>: X%`` line at or after the end signal: ``Finish training`` (or
MaPLe's ``Finished training``) in a training log, ``=> result`` with ``--test-log``. The printed
lines are upstream's (Dassl's tools/parse_test_res.py). Unlike upstream, a missing or unfinished log is reported
and left out instead of stopping the script with an assertion; it exits non-zero only when a
folder holds no result at all.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional

from runs.results import TEST_END_SIGNAL, TRAIN_END_SIGNALS, ci95, mean, read_metric, std


def subfolders(directory: Path) -> List[Path]:
    """Non-hidden sub-folders, sorted by name (upstream's ``listdir_nohidden(sort=True)``; files are
    left out here, where upstream would stop on them)."""
    return sorted((p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def parse_directory(directory: Path, keyword: str, test_log: bool, use_ci95: bool) -> Optional[float]:
    """Print every run's value and the folder's summary; return the mean (None: nothing found)."""
    print(f"Parsing files in {directory}")
    signals = (TEST_END_SIGNAL,) if test_log else TRAIN_END_SIGNALS
    values = []
    for run in subfolders(directory):
        log = run / "log.txt"
        if not log.is_file():
            print(f"Missing log: {log} (run not started, or DIR is not a folder of runs)")
            continue
        value = read_metric(log, keyword, signals)
        if value is None:
            print(f"No result in {log} (unfinished run? try --test-log for an evaluation log)")
            continue
        print(f"file: {log}. {keyword}: {value:.2f}%. ")
        values.append(value)
    if not values:
        print(f"Nothing found in {directory}")
        return None
    spread = ci95(values) if use_ci95 else std(values)
    print("===")
    print(f"Summary of directory: {directory}")
    print(f"* {keyword}: {mean(values):.2f}% +- {spread:.2f}%")
    print("===")
    return mean(values)


def parse_experiments(directory: Path, keyword: str, test_log: bool, use_ci95: bool) -> Optional[float]:
    """``--multi-exp``: each sub-folder is an experiment of seed folders; average their means."""
    means: Dict[str, float] = {}
    for experiment in subfolders(directory):
        value = parse_directory(experiment, keyword, test_log, use_ci95)
        if value is not None:
            means[experiment.name] = value
    if not means:
        return None
    average = mean(list(means.values()))
    print("Average performance")
    print(f"* {keyword}: {average:.2f}%")
    return average


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=str, help="path to directory")
    parser.add_argument("--ci95", action="store_true", help="compute 95%% confidence interval")
    parser.add_argument("--test-log", action="store_true", help="parse test-only logs")
    parser.add_argument("--multi-exp", action="store_true", help="parse multiple experiments")
    parser.add_argument("--keyword", default="accuracy", type=str, help="which keyword to extract")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    directory = Path(args.directory)
    if not directory.is_dir():
        print(f"{directory} is not a folder: pass a folder of runs (e.g. .../vit_b16 holding seed1, seed2, ...).",
              file=sys.stderr)
        return 2
    parse = parse_experiments if args.multi_exp else parse_directory
    return 0 if parse(directory, args.keyword, args.test_log, args.ci95) is not None else 1


if __name__ == "__main__":
    sys.exit(main())
