"""bench/bench_prompts.py: its methods are the registry's, every case measures, and its results
come out as a CSV (the README's cost table comes from the GPU check: tests/test_cost_table.py)."""
from __future__ import annotations

import csv
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import bench_prompts as bp  # noqa: E402

from runs.methods import METHODS as REGISTRY  # noqa: E402


def test_methods_are_the_registry_s_and_the_official_style_reference():
    expected = [m.label for m in REGISTRY.values() if m.in_checkout()]
    assert list(bp.METHODS) == expected + [bp.OFFICIAL_STYLE]
    assert bp.METHODS["CoOp"][1].endswith("vit_b16_ep50_ctxv1.yaml")  # CoOp's ImageNet config


def test_a_trained_and_an_evaluation_only_method_are_measured(tmp_path):
    clip = bp.write_random_clip(str(tmp_path / "clip.pt"), "tiny")
    root = bp.write_label_space(str(tmp_path / "classes"), bp.read_classnames(4))
    base = dict(clip_path=clip, root=root, work_dir=str(tmp_path / "work"), arch="tiny", device="cpu",
                test_batch=4, text_chunk=0, steps=1, eval_batches=1, num_classes=4)
    coop = bp.run_method_case(dict(base, method="CoOp"))
    zero_shot = bp.run_method_case(dict(base, method="CLIP"))
    assert coop["step_ms"] > 0 and coop["eval_images_per_s"] > 0
    assert "step_ms" not in zero_shot and zero_shot["eval_images_per_s"] > 0


def test_results_as_csv(tmp_path):
    report = {"setup": dict(classes=[10], command="bench/bench_prompts.py", machine="a CPU", arch="tiny",
                            precision="fp32", test_batch=8),
              "methods": {"CoOp": {"10": dict(step_ms=12.5, train_peak_mib=30.0, eval_images_per_s=80.0,
                                                eval_peak_mib=10.0)},
                          "CLIP": {"10": dict(error="exit code 1")}}}
    path = tmp_path / "results.csv"
    bp.write_csv(report, str(path))
    rows = list(csv.DictReader(open(path)))
    assert [(r["method"], r["num_classes"], r["step_ms"], r["error"]) for r in rows] == \
        [("CoOp", "10", "12.5", ""), ("CLIP", "10", "", "exit code 1")]
