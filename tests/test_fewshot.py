"""CoOp's few-shot protocol: the registry's config per shot count, the ``fewshot`` step, the job list of
scripts/reproduce/fewshot.sh, and the report's few-shot table and plot from real runs on the kit."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import run_script, script_env
from runs.methods import METHODS
from runs.plans import FEWSHOT_METHODS
from runs.results import B2N_DATASETS
from runs.steps import Caller, runs_of
from test_report import make_report, row_of

REPO = Path(__file__).resolve().parent.parent


def test_coop_trains_fewer_epochs_at_low_shots_and_imagenet_for_50():
    coop = METHODS["coop"]
    assert [coop.fewshot_config("dtd", n) for n in (1, 2, 4, 8, 16)] == [
        "vit_b16_ep50", "vit_b16_ep100", "vit_b16_ep100", "vit_b16", "vit_b16"]
    assert {coop.fewshot_config("imagenet", n) for n in (1, 2, 4, 8, 16)} == {"vit_b16_ep50"}
    assert coop.fewshot_config("dtd", 1, asked="rn50") == "rn50"
    promptsrc = METHODS["promptsrc"]
    assert promptsrc.fewshot_config("eurosat", 4).endswith("_few_shot_gpa45")
    assert promptsrc.fewshot_config("caltech101", 4).endswith("_few_shot")


def test_every_few_shot_config_is_on_disk():
    for key in FEWSHOT_METHODS:
        method = METHODS[key]
        for dataset in B2N_DATASETS:
            for shots in (1, 2, 4, 8, 16):
                assert method.config_path(method.fewshot_config(dataset, shots)).is_file(), (key, dataset, shots)


def test_the_step_trains_on_all_classes_and_tests_in_the_same_run(tmp_path):
    caller = Caller.from_environ({"OUTPUT": str(tmp_path), "DATA": "/data", "EPOCHS": "3"})
    (run,) = runs_of(METHODS["coop"], "fewshot", ["dtd", "2", "1"], caller)
    assert run.folder == tmp_path / "fewshot" / "dtd" / "shots_2" / "CoOp" / "vit_b16_ep100" / "seed1"
    argv = " ".join(run.argv)
    assert "DATASET.NUM_SHOTS 2 DATASET.SUBSAMPLE_CLASSES all" in argv and "--eval-only" not in argv
    assert argv.endswith("OPTIM.MAX_EPOCH 3")
    with pytest.raises(ValueError, match="does not define the few-shot protocol"):
        runs_of(METHODS["slip"], "fewshot", ["dtd", "2", "1"], caller)
    with pytest.raises(ValueError, match="SHOTS must be a positive number"):
        runs_of(METHODS["coop"], "fewshot", ["dtd", "0", "1"], caller)


def test_a_bad_shot_count_is_a_usage_error(tmp_path):
    proc = subprocess.run(["bash", "scripts/run.sh", "coop", "fewshot", "dtd", "two", "1"], cwd=REPO, text=True,
                          capture_output=True, env=script_env(OUTPUT=str(tmp_path)))
    assert proc.returncode == 2 and "SHOTS must be a positive number of images per class, got 'two'" in proc.stderr


def test_the_dry_run_lists_11_datasets_5_shot_counts_and_3_seeds_per_method(tmp_path):
    proc = subprocess.run(["bash", "scripts/reproduce/fewshot.sh", "--dry-run"], cwd=REPO, text=True, capture_output=True,
                          env=script_env(OUTPUT=str(tmp_path), METHODS="zsclip coop gopro slip"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    ids = re.findall(r"^\[todo\] (\S+)", proc.stdout, re.M)
    for key in ("coop", "gopro"):
        runs = [i for i in ids if i.startswith(f"{key}/fewshot/")]
        assert len(runs) == len(set(runs)) == 11 * 5 * 3
    assert len([i for i in ids if i.startswith("zsclip/all/")]) == 11  # shots do not matter
    assert "slip: skipped, it does not define the few-shot protocol" in proc.stdout + proc.stderr
    assert "env CFG=vit_b16_ep50 bash scripts/run.sh coop fewshot caltech101 1 3" in proc.stdout


# The few-shot methods of the registry, split by cost: the prompt learners run 1 shot, the cheap family
# (training-free and fine-tuned on frozen CLIP or with adapters) and CoOp 1 and 16 shots, where their
# configs differ by shot count (CoOp, CLIP-Adapter) and the 16-shot fits use a larger cache and more data.
CHEAP_FAMILY = tuple(k for k in FEWSHOT_METHODS if {"training-free", "fine-tuned"} & set(METHODS[k].tags))
PROMPT_LEARNERS = tuple(k for k in FEWSHOT_METHODS if k not in CHEAP_FAMILY)
REGIMES = {"zsclip": "training-free", "gda": "training-free", "tip_adapter": "training-free",
           "tip_adapter_f": "fine-tuned", "linear_probe": "fine-tuned", "clip_adapter": "fine-tuned",
           "clip_lora": "fine-tuned"}  # the prompt learners: inductive
KIT_FEWSHOT_OPTS = ("TRAINER.CLIPLORA.N_ITERS", "2")  # CLIP-LoRA: 2 x shots iterations instead of 500 x shots


def run_fewshot_script(kit, output: Path, methods, shots_list: str) -> None:
    env = script_env(DATA=str(kit.data), OUTPUT=str(output), EXTRA_OPTS=" ".join([*kit.opts(), *KIT_FEWSHOT_OPTS]),
                     EPOCHS="1", METHODS=" ".join(methods), DATASETS="oxford_pets", SEEDS="1", SHOTS_LIST=shots_list)
    proc = run_script("reproduce/fewshot.sh", "--gpus", "", "--jobs", "2", env=env, timeout=1800)
    assert "0 failed" in proc.stdout and "0 method(s) skipped" in proc.stdout, proc.stdout


@pytest.mark.slow
def test_every_few_shot_method_runs_through_the_scripts_and_fills_the_table_and_plot(kit, tmp_path):
    """scripts/reproduce/fewshot.sh on the kit (one seed, OxfordPets, EPOCHS=1) for every method of the
    registry that defines the protocol, then the report: a row per method, with its regime, backbone and
    origin, beside the published rows. Measured: 5.2 CPU-minutes (23 runs of 10-16 s),
    9 minutes of wall time on 2 shared cores (load average 5-10)."""
    assert {"gda", "tip_adapter", "tip_adapter_f", "linear_probe", "clip_adapter", "clip_lora"} <= set(CHEAP_FAMILY)
    output = tmp_path / "output"
    run_fewshot_script(kit, output, PROMPT_LEARNERS, "1")
    run_fewshot_script(kit, output, ("coop", *CHEAP_FAMILY), "1 16")
    runs = output / "fewshot" / "oxford_pets"
    for key, shots, cfg in (("coop", 1, "vit_b16_ep50"), ("coop", 16, "vit_b16"), ("clip_adapter", 1, "vit_b16_ep50"),
                            ("clip_adapter", 16, "vit_b16"), ("gda", 16, "vit_b16")):
        assert (runs / f"shots_{shots}" / METHODS[key].folder / cfg / "seed1" / "log.txt").is_file(), (key, shots)

    text = make_report(output, "--tables", "fewshot", "--methods", *FEWSHOT_METHODS, "--seeds", "1",
                       "--datasets", "oxford_pets", "--shots-list", "1", "16")
    average = "Average over the datasets"
    for key in FEWSHOT_METHODS:
        method = METHODS[key]
        row = row_of(text, average, method.label)
        assert row[3:] == [REGIMES.get(key, "inductive"), "ViT-B/16", "ours"], row
        ran_16 = key in CHEAP_FAMILY or key in ("coop", "zsclip")
        for cell in row[1:3] if ran_16 else row[1:2]:
            assert 0 <= float(cell.split(" ")[0]) <= 100 and "[" in cell, row  # a number, footnoted (EPOCHS=1)
        if not ran_16:
            assert row[2].startswith("n/a"), row
        assert row_of(text, method.label, "Average")[1:] == row[1:3]  # one dataset: its average
    clip = row_of(text, average, "CLIP")
    assert clip[1] == clip[2]  # zero-shot: one run, the same at every shot count
    for label in ("GDA", "Tip-Adapter", "Tip-Adapter-F", "CLIP-Adapter"):
        row = row_of(text, average, f"{label} (reported)")
        assert row[3] == row_of(text, average, label)[3] and row[4] == "RN50" and "exp.log" in row[5], row
        assert row_of(text, label, "OxfordPets (reported, RN50)")[1:] != ["–", "–"]
    png = output / "figures" / "fewshot.png"
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_published_numbers_are_shown_beside_ours_with_regime_backbone_and_origin(tmp_path):
    from tools.experiments.report import Cell, fewshot_reported, fewshot_section

    published = tmp_path / "reported.json"
    per_dataset = {d: [50.0 + i, 60.0 + i] for i, d in enumerate(B2N_DATASETS)}  # means: 55 and 65
    published.write_text(json.dumps({"columns": [1, 16], "rows": {
        "GDA": {"backbone": "RN50", "source": "a log", "url": "u", "per_dataset": per_dataset},
        "CoOp": {"backbone": "ViT-B/16", "source": "a table", "url": "u", "values": [70.5, 80.25]}}}))
    reported = fewshot_reported(published)
    assert reported["GDA"].average == {1: 55.0, 16: 65.0} and reported["GDA"].per_dataset["dtd"] == {1: 58.0, 16: 68.0}
    assert reported["CoOp"].average == {1: 70.5, 16: 80.25} and not reported["CoOp"].average_derived
    ours = {"GDA": {"dtd": [Cell(50.0, std=1.0, n=3, expected=3), Cell(None, expected=3)],
                    "average": [Cell(50.0), Cell(None, note="0/1 datasets")]}}
    section = fewshot_section(ours, (1, 16), reported, "ViT-B/16")
    average = section.blocks[0]
    assert average.headers == ["Method", "1 shot", "16 shots", "Regime", "Backbone", "Numbers from"]
    assert average.rows == [
        ["GDA", "50.00", "n/a (0/1 datasets)", "training-free", "ViT-B/16", "ours"],
        ["GDA (reported)", "55.00", "65.00", "training-free", "RN50", "a log; average = mean of its 11 per-dataset numbers"],
        ["CoOp (reported)", "70.50", "80.25", "inductive", "ViT-B/16", "a table"]]
    assert section.blocks[1].rows == [["DTD", "50.00 ± 1.00", "n/a (0/3 seeds)"],
                                      ["DTD (reported, RN50)", "58.00", "68.00"],
                                      ["Average", "50.00", "n/a (0/1 datasets)"]]


def test_reported_averages_need_all_11_datasets(tmp_path):
    from tools.experiments.report import reported_average

    assert reported_average({"dtd": {1: 50.0}}, (1,)) == {}


def test_the_reported_file_names_a_source_and_backbone_for_every_number():
    from tools.experiments.report import FEWSHOT_REPORTED_JSON

    data = json.loads(FEWSHOT_REPORTED_JSON.read_text())
    columns = len(data["columns"])
    for label, row in data["rows"].items():
        assert row["source"] and row["url"].startswith("https://") and row["backbone"], label
        assert "values" in row or "per_dataset" in row, label
        assert len(row.get("values", [0] * columns)) == columns, label
        assert set(row.get("per_dataset", {})) <= set(B2N_DATASETS), label
        assert all(len(v) == columns for v in row.get("per_dataset", {}).values()), label
    assert set(data["rows"]).isdisjoint(data["not_found"])


def test_a_table_asked_for_a_method_without_its_protocol_skips_it(tmp_path):
    """Tip-Adapter defines only the few-shot protocol: table1 (and the report, which lists every
    table's jobs) schedule the other methods and name it as skipped instead of stopping."""
    proc = subprocess.run(["bash", "scripts/reproduce/table1.sh", "--dry-run"], cwd=REPO, text=True, capture_output=True,
                          env=script_env(OUTPUT=str(tmp_path), METHODS="tip_adapter coop", DATASETS="dtd", SEEDS="1"),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "tip_adapter: skipped, it does not define the base-to-new protocol (no b2n_cfg)" in proc.stdout + proc.stderr
    assert re.findall(r"^\[todo\] (\S+)", proc.stdout, re.M) == ["coop/b2n_train/dtd/seed1", "coop/b2n_test/dtd/seed1"]



def test_the_dg_table_skips_a_distilled_student_and_says_why(tmp_path):
    """PromptKD's scripts have no cross-dataset step (each target would need its own teacher
    export): table2 schedules the other methods and names it as skipped instead of failing its runs."""
    proc = subprocess.run(["bash", "scripts/reproduce/table2.sh", "--dry-run"], cwd=REPO, text=True, capture_output=True,
                          env=script_env(OUTPUT=str(tmp_path), METHODS="promptkd coop", DATASETS="imagenetv2", SEEDS="1"),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "promptkd: skipped, no cross-dataset runs here" in proc.stdout + proc.stderr
    assert re.findall(r"^\[todo\] (\S+)", proc.stdout, re.M) == ["coop/xd_train/seed1", "coop/xd_test/imagenetv2/seed1"]

def test_methods_with_a_feature_cache_share_one_folder_under_output(tmp_path):
    """A method whose trainer keeps the feature cache gets <OUTPUT>/feature_cache in every run; one
    without it (CoOp) gets nothing."""
    caller = Caller.from_environ({"OUTPUT": str(tmp_path), "DATA": "/data"})
    (probe,) = runs_of(METHODS["linear_probe"], "fewshot", ["dtd", "4", "1"], caller)
    assert probe.argv[-2:] == ("TRAINER.FEATURE_CACHE_DIR", str(tmp_path / "feature_cache"))
    (coop,) = runs_of(METHODS["coop"], "fewshot", ["dtd", "4", "1"], caller)
    assert "TRAINER.FEATURE_CACHE_DIR" not in coop.argv


@pytest.mark.parametrize("method", [m for m in METHODS.values() if m.in_checkout()], ids=lambda m: m.key)
def test_the_registry_says_which_trainers_keep_the_feature_cache(method):
    """``Method.feature_cache`` is what the trainer module's extend_cfg does (the scripts read the
    registry instead of importing the trainer, which costs seconds per script)."""
    import importlib

    from dassl.config import get_cfg_default
    from runs.cli import extend_cfg

    cfg = get_cfg_default()
    extend_cfg(cfg, [importlib.import_module(f"trainers.{method.module or method.key}")])
    assert ("FEATURE_CACHE_DIR" in cfg.TRAINER) == method.feature_cache
