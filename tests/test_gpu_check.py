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
    planned = lambda trainer: {(c["num_classes"], c["precision"]) for c in methods if c["trainer"] == trainer}
    for trainer in trainers:
        assert {c for c, _ in planned(trainer)} == {10, 100, 1000}, trainer
    for trainer in ("CoOp", "GOPro", "MaPLe"):
        assert planned(trainer) == {(c, p) for c in (10, 100, 1000) for p in ("fp16", "bf16")}
    assert planned("ZeroshotCLIP") == {(c, "fp16") for c in (10, 100, 1000)}  # it fixes its precision: once per C
    assert all(c["checkpoint_variant"] == (c["num_classes"] == 1000) for c in methods)


def test_method_config_prefers_the_paper_config():
    config = lambda trainer: gpu_check.method_config(trainer)
    assert config("CoOp").endswith("configs/trainers/CoOp/vit_b16_ctxv1.yaml")  # the registry's base-to-new
    assert "configs/trainers/IVLP/vit_b16_" in config("IVLP")  # not in the paper: a ViT-B/16 one of its folder
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


def fake_worker(calls: list, dies_in: str = "", hangs: bool = False):
    """Stands in for ``subprocess.run`` of a worker: records the cases it is given, reports them
    done in order, and dies (exit code -11) on starting ``dies_in`` or hangs into its timeout."""

    def run(command, **kwargs):
        with open(command[-1]) as f:
            spec = json.load(f)
        calls.append([case["id"] for case in spec["cases"]])
        with open(spec["results"], "a") as results:
            for case in spec["cases"]:
                results.write(json.dumps({"start": case["id"]}) + "\n")
                if hangs:
                    raise subprocess.TimeoutExpired(command, kwargs["timeout"])
                if case["id"] == dies_in:
                    return subprocess.CompletedProcess(command, -11)
                results.write(json.dumps({"done": case["id"], "section": "methods", "rows": [{"status": "ok"}]}) + "\n")
        return subprocess.CompletedProcess(command, 0)

    return run


CASES = [dict(id=f"CoOp C={c} fp32", section="methods", trainer="CoOp", num_classes=c, precision="fp32")
         for c in (10, 100, 1000)]


def test_a_worker_that_dies_is_restarted_for_the_cases_left(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(gpu_check.subprocess, "run", fake_worker(calls, dies_in="CoOp C=100 fp32"))
    done = gpu_check.run_worker(CASES, {}, time.time() + 600, str(tmp_path), str(tmp_path / "worker.log"))
    ids = [case["id"] for case in CASES]
    assert calls == [ids, ids[2:]]  # the second worker gets only the case after the one the first died in
    assert [done[i]["rows"][0]["status"] for i in ids] == ["ok", "error: worker died (exit code -11)", "ok"]
    assert done[ids[1]]["rows"][0]["method"] == "CoOp"


def test_a_worker_still_running_at_the_end_of_the_budget_is_stopped(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(gpu_check.subprocess, "run", fake_worker(calls, hangs=True))
    done = gpu_check.run_worker(CASES, {}, time.time() - 1, str(tmp_path), str(tmp_path / "worker.log"))
    assert len(calls) == 1  # no second worker once the budget is spent
    statuses = [done[case["id"]]["rows"][0]["status"] for case in CASES]
    assert statuses == ["stopped: over budget", gpu_check.OVER_BUDGET, gpu_check.OVER_BUDGET]


def test_cuda_without_a_gpu_says_what_to_run(monkeypatch):
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="--device cpu --quick"):
        gpu_check.main(["--device", "cuda"])


@pytest.mark.slow
def test_quick_cpu_check_runs_every_section(kit, tmp_path):
    """The CI command, writing into a temporary folder, reusing the session's kit, with a budget no
    slow machine runs out of (so that every case must report a measurement)."""
    out = tmp_path / "out"
    proc = subprocess.run(["bash", "bench/gpu_check.sh", "--device", "cpu", "--quick", "--out", str(out),
                           "--kit", str(kit.root), "--budget", "900"],
                          cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert "## Train step" in proc.stdout and (out / "gpu_check_worker.log").exists()

    assert report["kit"]["status"] == "ok" and 0.0 <= report["kit"]["accuracy"] <= 100.0
    assert report["kit"]["command"].endswith("USE_CUDA False")  # (the last override wins)

    text = report["text"]
    assert text["status"] == "ok" and text["sequences"] == 1000
    assert text["truncated_seq_per_s"] > 0 and text["full_seq_per_s"] > 0
    assert text["max_abs_diff_fp32"] <= 1e-4  # truncation is exact up to fp32 reassociation

    # the real half-precision towers on the CPU ($GOPRO_HALF_ON_CPU, set by the worker)
    assert [p["precision"] for p in report["precision"]] == ["fp16", "bf16", "amp"]
    for precision in report["precision"]:
        assert precision["status"] == "ok"
        # bf16 keeps 8 bits of mantissa (relative step 2^-8 ≈ 0.004), fp16 11: differences of a few
        # steps per operation, far below the O(1) a broken path (zero or unrelated gradients) would give
        assert 0.0 < precision["loss_rel_diff"] < 0.1 and 0.0 < precision["grad_rel_diff"] < 0.3
        assert math.isfinite(precision["loss"]) and precision["tensors"] > 0

    memory = report["memory"]
    assert {r["method"] for r in memory} == set(gpu_check.MEMORY_TRAINERS)
    assert all(r["status"] == "ok" and r["predicted_step_mib"] > 0 for r in memory), memory

    rows = report["methods"]
    assert {r["status"] for r in rows} == {"ok"}, [r for r in rows if r["status"] != "ok"]
    assert {r["method"] for r in rows} == set(gpu_check.registered_trainers())
    for r in rows:
        assert r["eval_images_per_s"] > 0 and r["eval_peak_mib"] is not None
        if "step_ms" in r or "fit_ms" in r:
            assert r.get("step_ms", r.get("fit_ms")) > 0 and r["train_peak_mib"] is not None
        else:
            assert r["note"] == "eval only"
    precisions = lambda trainer: {r["precision"] for r in rows if r["method"] == trainer}
    assert precisions("GOPro") == precisions("CoOp") == {"fp32", "fp16", "bf16", "amp"}
    assert precisions("ZeroshotCLIP") == {"fp32"}
    assert all("step_ms" not in r for r in rows if r["method"] == "ZeroshotCLIP")  # evaluation only
    assert all("fit_ms" in r for r in rows if r["method"] in ("GDA", "TipAdapter", "LinearProbe"))  # one fit
    checkpointed = {r["method"] for r in rows if r["checkpoint_text"]}
    assert {"GOPro", "CoCoOp", "StyLIP"} <= checkpointed and "CoOp" not in checkpointed
