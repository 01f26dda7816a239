"""bench/cost_table.py: the README's cost table is the one generated from the measured GPU check
(bench/gpu_check.json), and it shows every registry method and every measured case."""
from __future__ import annotations

import json
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

import cost_table  # noqa: E402

from runs.methods import METHODS  # noqa: E402
from tools.memory import text_between_markers  # noqa: E402


@pytest.fixture(scope="module")
def report() -> dict:
    return cost_table.load_report(cost_table.DEFAULT_JSON)


def test_the_readme_cost_table_is_generated_from_the_gpu_check(report):
    assert text_between_markers(str(REPO / "README.md"), cost_table.MARKERS) == cost_table.cost_table(report), \
        "the README's cost table is not the one bench/gpu_check.json gives: run `make cost-table`"


def test_every_registry_method_has_a_row_and_every_measured_case_a_cell(report):
    rows = list(cost_table.table_rows(report))
    labels = {row[0] for row in rows}
    assert {m.label for m in METHODS.values() if m.in_checkout()} <= labels
    assert set(report["setup"]["methods"]) - {m.trainer for m in METHODS.values()} <= labels  # unregistered trainers
    composed = [row for row in rows if row[0] in {m.label for m in METHODS.values() if m.plugins}]
    assert composed and all("plug-ins" in cell for row in composed for cell in row[2:])
    # each case the check ran or skipped is one cell (of its trainer's row), shown as cost_table.cell shows it
    cells = [cell for row in rows for cell in row[2:] if cell != "-" and not cell.startswith("not measured")]
    assert sorted(cells) == sorted(cost_table.cell(r) for r in report["methods"])
    assert cost_table.cell(dict(status="skipped: over budget")) in cells  # this check ran out of time at C = 1000


def test_a_case_is_shown_with_its_numbers_or_its_status():
    step = dict(status="ok", step_ms=48.123, train_peak_mib=2209.8, eval_images_per_s=7330.1, eval_peak_mib=279.1)
    assert cost_table.cell(step) == "48.1 ms / 2,210 MiB · 7,330 img/s / 279 MiB"
    fit = dict(status="ok", fit_ms=9949.4, train_peak_mib=449.4, eval_images_per_s=6523.2, eval_peak_mib=278.0)
    assert cost_table.cell(fit).startswith("fit 9,949 ms / 449 MiB")
    assert cost_table.cell(dict(status="ok", eval_images_per_s=7341.9, eval_peak_mib=277.0)).startswith("eval only")
    assert cost_table.cell(dict(status="out of memory")) == "out of memory"
    assert cost_table.cell(None) == "-"


def test_a_missing_or_foreign_json_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="No GPU check results"):
        cost_table.load_report(str(tmp_path / "gpu_check.json"))
    (tmp_path / "other.json").write_text(json.dumps({"text": {}}))
    with pytest.raises(SystemExit, match="not a bench/gpu_check.py report"):
        cost_table.load_report(str(tmp_path / "other.json"))
