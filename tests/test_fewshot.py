"""CoOp's few-shot protocol: the registry's config per shot count, the ``fewshot`` step, the job list of
scripts/reproduce/fewshot.sh, and the report's few-shot table and plot from real runs on the kit."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_script
from runs.methods import METHODS
from runs.plans import FEWSHOT_METHODS
from runs.results import B2N_DATASETS
from runs.steps import Caller, runs_of
from test_report import make_report, row_of

REPO = Path(__file__).resolve().parent.parent


def clean_env(**env) -> dict:
    kept = {k: v for k, v in os.environ.items() if k not in ("CFG", "SHOTS", "SHOTS_LIST", "DATASETS", "SEEDS", "METHODS",
                                                             "EPOCHS", "EXTRA_OPTS")}
    return {**kept, "PYTHON": sys.executable, **env}


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
                          capture_output=True, env=clean_env(OUTPUT=str(tmp_path)))
    assert proc.returncode == 2 and "SHOTS must be a positive number of images per class, got 'two'" in proc.stderr


def test_the_dry_run_lists_11_datasets_5_shot_counts_and_3_seeds_per_method(tmp_path):
    proc = subprocess.run(["bash", "scripts/reproduce/fewshot.sh", "--dry-run"], cwd=REPO, text=True, capture_output=True,
                          env=clean_env(OUTPUT=str(tmp_path), METHODS="zsclip coop gopro slip"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    ids = re.findall(r"^\[todo\] (\S+)", proc.stdout, re.M)
    for key in ("coop", "gopro"):
        runs = [i for i in ids if i.startswith(f"{key}/fewshot/")]
        assert len(runs) == len(set(runs)) == 11 * 5 * 3
    assert len([i for i in ids if i.startswith("zsclip/all/")]) == 11  # shots do not matter
    assert "slip: skipped, it does not define the few-shot protocol" in proc.stdout + proc.stderr
    assert "env CFG=vit_b16_ep50 bash scripts/run.sh coop fewshot caltech101 1 3" in proc.stdout


@pytest.mark.slow
def test_the_kit_fills_the_few_shot_table_and_plot(kit, tmp_path):
    output = tmp_path / "output"
    env = clean_env(DATA=str(kit.data), OUTPUT=str(output), EXTRA_OPTS=" ".join(kit.opts()), EPOCHS="1",
                    METHODS="zsclip coop", DATASETS="oxford_pets", SEEDS="1", SHOTS_LIST="1 2")
    proc = run_script("reproduce/fewshot.sh", "--gpus", "", env=env, timeout=1800)
    assert "0 failed" in proc.stdout, proc.stdout
    assert (output / "fewshot/oxford_pets/shots_1/CoOp/vit_b16_ep50/seed1/log.txt").is_file()
    assert (output / "fewshot/oxford_pets/shots_2/CoOp/vit_b16_ep100/seed1/log.txt").is_file()
    text = make_report(output, "--tables", "fewshot", "--methods", "zsclip", "coop", "--seeds", "1",
                       "--datasets", "oxford_pets", "--shots-list", "1", "2")
    for label in ("CLIP", "CoOp"):
        row = row_of(text, label, "OxfordPets")
        assert len(row) == 3 and all(0 <= float(c.split(" ")[0]) <= 100 for c in row[1:]), row
        assert row_of(text, "Average over the datasets", label)[1:] == row[1:]  # one dataset: its average
    clip = row_of(text, "CLIP", "OxfordPets")
    assert clip[1] == clip[2]  # zero-shot: one run, the same at every shot count
    png = output / "figures" / "fewshot.png"
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_published_averages_are_shown_beside_ours(tmp_path):
    from tools.experiments.report import Cell, fewshot_reported, fewshot_section

    published = tmp_path / "reported.json"
    published.write_text('{"columns": [1, 16], "rows": {"GDA": {"values": [70.5, 80.25], "source": "a file"}}}')
    reported = fewshot_reported(published)
    assert reported == {"GDA": {1: 70.5, 16: 80.25}}
    ours = {"CoOp": {"dtd": [Cell(50.0, std=1.0, n=3, expected=3), Cell(None, expected=3)],
                     "average": [Cell(50.0), Cell(None, note="0/1 datasets")]}}
    section = fewshot_section(ours, (1, 16), reported)
    average = section.blocks[0]
    assert average.headers == ["Method", "1 shot", "16 shots"]
    assert average.rows == [["CoOp", "50.00", "n/a (0/1 datasets)"], ["GDA (reported)", "70.50", "80.25"]]
    assert section.blocks[1].rows[0] == ["DTD", "50.00 ± 1.00", "n/a (0/3 seeds)"]


def test_the_reported_file_names_a_source_for_every_number():
    from tools.experiments.report import FEWSHOT_REPORTED_JSON

    data = json.loads(FEWSHOT_REPORTED_JSON.read_text())
    assert all(row["source"] and len(row["values"]) == len(data["columns"]) for row in data["rows"].values())
    assert set(data["rows"]).isdisjoint(data["not_found"])


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
