"""bench/gpu_check.sh: the prepared GPU check, kept working on a CPU (``--device cpu --quick``)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

import gpu_check  # noqa: E402


def test_every_registered_trainer_is_planned_at_every_size():
    sizes = gpu_check.default_sizes("cuda", quick=False)
    trainers = gpu_check.registered_trainers()
    assert {"ZeroshotCLIP", "CoOp", "CoCoOp", "MaPLe", "IVLP", "VPT", "StyLIP", "SLIP", "GOPro"} <= set(trainers)
    cases = gpu_check.plan_cases("cuda", sizes, trainers)
    assert [c["section"] for c in cases[:3]] == ["text", "precision", "precision"]
    assert {c["precision"] for c in cases if c["section"] == "precision"} == {"fp16", "bf16"}
    methods = [c for c in cases if c["section"] == "methods"]
    assert [c["num_classes"] for c in methods] == sorted(c["num_classes"] for c in methods)  # largest C last
    for trainer in trainers:
        planned = {(c["num_classes"], c["precision"]) for c in methods if c["trainer"] == trainer}
        # zero-shot CLIP fixes its own precision: once per C
        precisions = ("fp16",) if trainer.startswith("ZeroshotCLIP") else ("fp16", "bf16")
        assert planned == {(c, p) for c in (10, 100, 1000) for p in precisions}, trainer
    assert all(c["checkpoint_variant"] == (c["num_classes"] == 1000) for c in methods)


def test_method_config_prefers_the_paper_config():
    config = lambda trainer: gpu_check.method_config(trainer)
    assert config("CoOp").endswith("configs/trainers/CoOp/vit_b16_ctxv1.yaml")  # tools/results.py's base-to-new
    assert config("IVLP").endswith("configs/trainers/IVLP/vit_b16_c2_ep5_batch4_2+2ctx.yaml")  # first ViT-B/16 one
    assert config("ZeroshotCLIP") is None  # no folder: the trainer's defaults


def test_a_case_that_does_not_fit_the_budget_is_skipped_without_running():
    run = dict(device="cpu")
    cases = gpu_check.MethodCases(run, deadline=time.time() + 60)
    cases.history["GOPro", "fp32"] = (100, 2.0, 30.0)  # C = 100: built in 2 s, measured in 30 s
    assert cases.predicted_s("GOPro", "fp32", 1000) == pytest.approx(2.0 + 300.0)
    case = dict(trainer="GOPro", num_classes=1000, precision="fp32", checkpoint_variant=True)
    assert cases(case) == [dict(num_classes=1000, method="GOPro", precision="fp32", checkpoint_text=False,
                                status=gpu_check.OVER_BUDGET)]
    late = gpu_check.MethodCases(run, deadline=time.time() - 1)  # budget spent: nothing starts
    assert late(dict(case, trainer="CoOp", num_classes=10))[0]["status"] == gpu_check.OVER_BUDGET


def test_cuda_without_a_gpu_says_what_to_run(monkeypatch):
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="--device cpu --quick"):
        gpu_check.main(["--device", "cuda"])


@pytest.mark.slow
def test_quick_cpu_check_runs_every_section(kit, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", "bench/gpu_check.sh", "--device", "cpu", "--quick", "--out", str(out),
                           "--kit", str(kit.root), "--budget", "900"],
                          cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert "## Train step" in proc.stdout and (out / "gpu_check_worker.log").exists()

    assert report["kit"]["status"] == "ok" and 0.0 <= report["kit"]["accuracy"] <= 100.0
    assert "USE_CUDA False" in report["kit"]["command"]

    text = report["text"]
    assert text["status"] == "ok" and text["sequences"] == 1000
    assert text["truncated_seq_per_s"] > 0 and text["full_seq_per_s"] > 0
    assert text["max_abs_diff_fp32"] <= 1e-4  # truncation is exact up to fp32 reassociation

    (precision,) = report["precision"]
    assert precision["status"] == "ok" and precision["precision"] == "bf16"
    # bf16 keeps 8 bits of mantissa (relative step 2^-8 ≈ 0.004): differences of a few steps per
    # operation, far below the O(1) a broken path (zero or unrelated gradients) would give
    assert 0.0 < precision["loss_rel_diff"] < 0.1 and 0.0 < precision["grad_rel_diff"] < 0.3
    assert math.isfinite(precision["loss"]) and precision["tensors"] > 0

    rows = report["methods"]
    assert {r["status"] for r in rows} == {"ok"}, [r for r in rows if r["status"] != "ok"]
    for trainer in gpu_check.registered_trainers():
        mine = [r for r in rows if r["method"] == trainer and not r["checkpoint_text"]]
        assert {r["precision"] for r in mine} == ({"fp32"} if trainer.startswith("ZeroshotCLIP") else {"fp32", "bf16"})
        for r in mine:
            assert r["eval_images_per_s"] > 0
            if trainer.startswith("ZeroshotCLIP"):
                assert r["note"] == "eval only" and "step_ms" not in r
            else:
                assert r["step_ms"] > 0 and r["train_peak_mib"] is not None
    checkpointed = {r["method"] for r in rows if r["checkpoint_text"]}
    assert {"GOPro", "CoCoOp", "StyLIP"} <= checkpointed and "CoOp" not in checkpointed
