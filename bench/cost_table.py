#!/usr/bin/env python
"""The README's cost table, generated from a measured GPU check (``bench/gpu_check.json``).

    python bench/cost_table.py                      # print it (make cost-table writes it into README.md)
    python bench/cost_table.py --json bench/gpu_check.json --write README.md

One row per method of the registry (``runs/methods.py``) and precision; per class count C, what the
check measured for the method's trainer: training-step time, the step's peak memory, evaluation
images/s and the evaluation's peak memory (``torch.cuda.max_memory_allocated`` beyond what was
allocated before: the model's weights are not in it). A frozen-feature method's "step" is one whole
fit on its cached features. Cases the check did not run (its time budget ran out, or it failed) say
so; registry methods the check does not measure (plug-ins: it measures trainers) say that too.
"""
from __future__ import annotations

import argparse
import json
import os.path as osp
import sys
from typing import Dict, Iterator, List, Optional, Tuple

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

DEFAULT_JSON = osp.join(REPO, "bench", "gpu_check.json")
MARKERS = ("<!-- cost-table:start -->", "<!-- cost-table:end -->")
CHECKPOINTED = " + CHECKPOINT_TEXT"


def number(value: Optional[float]) -> str:
    """Thousands separated, no decimals from 100 on, one below."""
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def cell(row: Optional[dict]) -> str:
    """A measured case as "step ms / train MiB · eval img/s / eval MiB", or why there is none."""
    if row is None:
        return "-"  # not planned (CHECKPOINT_TEXT variants: the largest C only)
    if row.get("status") != "ok":
        return row.get("status", "not run")
    if "fit_ms" in row:
        train = f"fit {number(row['fit_ms'])} ms / {number(row.get('train_peak_mib'))} MiB"
    elif "step_ms" in row:
        train = f"{number(row['step_ms'])} ms / {number(row.get('train_peak_mib'))} MiB"
    else:
        train = "eval only"
    return f"{train} · {number(row.get('eval_images_per_s'))} img/s / {number(row.get('eval_peak_mib'))} MiB"


def measured_cases(report: dict) -> Dict[Tuple[str, str, bool, int], dict]:
    """(trainer, precision, CHECKPOINT_TEXT, C) -> the check's row."""
    return {(r["method"], r["precision"], r["checkpoint_text"], r["num_classes"]): r for r in report["methods"]}


def table_rows(report: dict) -> Iterator[List[str]]:
    """[method, precision, one cell per C] for every registry method (in registry order) and for
    trainers the check measured that no registry method names; CHECKPOINT_TEXT variants below."""
    from runs.methods import METHODS

    setup = report["setup"]
    cases = measured_cases(report)
    measured = {trainer for trainer, *_ in cases}
    shown = set()
    rows: List[Tuple[str, str]] = []  # (label, the trainer measured for it, or why none was)
    for method in METHODS.values():
        if not method.in_checkout():
            continue
        if method.plugins:
            rows.append((method.label, "not measured (the check runs trainers, not plug-ins)"))
        else:
            rows.append((method.label, method.trainer if method.trainer in measured else "not measured by this check"))
            shown.add(method.trainer)
    rows += [(trainer, trainer) for trainer in setup["methods"] if trainer not in shown]
    for label, trainer in rows:
        if trainer not in measured:
            yield [label, "-"] + [trainer] * len(setup["classes"])
            continue
        for checkpoint in (False, True):
            for precision in setup["precisions"]:
                cells = [cases.get((trainer, precision, checkpoint, c)) for c in setup["classes"]]
                if all(row is None for row in cells):
                    continue  # a precision the trainer fixes, or no CHECKPOINT_TEXT variant
                name = label + (CHECKPOINTED if checkpoint else "")
                yield [name, precision] + [cell(row) for row in cells]


def cost_table(report: dict) -> str:
    """The README's cost table (markdown) from a ``gpu_check.json`` report."""
    setup = report["setup"]
    lines = [f"Measured on {setup['machine']} on {setup.get('date', 'an unrecorded date')} by "
             f"`{setup['command']}` ({setup['arch']} CLIP with random weights, train batch {setup['batch_size']}, "
             f"test batch {setup['test_batch']}). Each cell: train step ms / its peak MiB · evaluation images/s / "
             "its peak MiB (peaks beyond the weights already allocated; a frozen-feature method's step is its "
             "whole fit on cached features; CHECKPOINT_TEXT variants run at the largest C only).", ""]
    header = ["method", "precision"] + [f"C = {c}" for c in setup["classes"]]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(report)]
    return "\n".join(lines)


def load_report(path: str) -> dict:
    if not osp.isfile(path):
        raise SystemExit(f"No GPU check results at {path}: run `bash bench/gpu_check.sh` on a GPU and copy its "
                         "gpu_check.json there (bench/RESULTS.md, 'GPU check: how to run').")
    with open(path) as f:
        report = json.load(f)
    if not {"setup", "methods"} <= set(report):
        raise SystemExit(f"{path} is not a bench/gpu_check.py report (it has no setup and methods sections)")
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=DEFAULT_JSON, help="the GPU check's report (default bench/gpu_check.json)")
    parser.add_argument("--write", metavar="README", help="put the table between the cost-table markers of this file")
    args = parser.parse_args(argv)
    table = cost_table(load_report(args.json))
    if args.write:
        from tools.memory import replace_between_markers

        replace_between_markers(args.write, table, MARKERS)
    else:
        print(table)


if __name__ == "__main__":
    main()
