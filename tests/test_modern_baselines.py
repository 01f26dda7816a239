"""The modern baselines (KgCoOp, ProGrad, PromptSRC) in the registry, scripts, reproduce commands, the
tiny kit and the report's "modern baselines" table beside their reported numbers."""
from __future__ import annotations

import csv
import json
import re
import sys

import pytest
from yacs.config import CfgNode

from runs import jobs, plans
from tools.kit import build as kit_module
from conftest import REPO, accuracies, run_script, run_train
from runs.methods import METHODS, MODERN, MODERN_BASELINES, OTHER, PAPER, PAPER_METHODS, VARIANT, Method
from runs.results import B2N_DATASETS, harmonic_mean
from test_baselines import last_epoch_after, script_setting, write_upstream_checkpoint
from test_report import b2n_logs, layout, make_report, row_of  # noqa: F401 (layout: fixture)

REPORTED = json.loads((REPO / "paper" / "modern_baselines_reported.json").read_text())["base2new_average"]["rows"]
MODERN_TITLE = "Modern baselines: base-to-new, ours beside each method's reported numbers"
# Modern baselines with scripts/<key>/ of their own (composed methods run through scripts/run.sh: test_dept.py).
STANDALONE = tuple(k for k in MODERN_BASELINES if not METHODS[k].plugins and METHODS[k].teacher is None)


def run_base2new_scripts(kit, output, folder: str, trainer: str, cfg: str, model_name: str = "prompt_learner"):
    """``scripts/<folder>/base2new_{train,test}.sh oxford_pets 1`` on the kit for one epoch: the two
    logs, each checked to hold one final result (the new-class one over the kit's 2 new classes)."""
    env = {"DATA": str(kit.data), "OUTPUT": str(output), "EPOCHS": "1", "EXTRA_OPTS": " ".join(kit.opts())}
    run_script(f"{folder}/base2new_train.sh", "oxford_pets", "1", env=env)
    run_script(f"{folder}/base2new_test.sh", "oxford_pets", "1", env=env)
    run = f"oxford_pets/shots_16/{trainer}/{cfg}/seed1"
    base = (output / "base2new/train_base" / run / "log.txt").read_text()
    new = (output / "base2new/test_new" / run / "log.txt").read_text()
    assert len(accuracies(base)) == 1 and len(accuracies(new)) == 1 and "# classes  2" in new
    assert (output / "base2new/train_base" / run / model_name / "model.pth.tar-1").is_file()
    return base, new


def evaluate_upstream_checkpoint(kit, tmp_path, trainer: str, cfg: str, model_name: str, epoch: int, state: dict) -> str:
    """``state`` written in upstream's layout (``<model_name>/model.pth.tar-<epoch>``) and evaluated on
    the kit's new classes by ``train.py --eval-only --model-dir``: its log, checked to load that file
    and to hold one result over the 2 new classes."""
    write_upstream_checkpoint(tmp_path / "upstream", model_name, epoch, state)
    out = tmp_path / "eval"
    run_train("--root", str(kit.data), "--seed", "1", "--trainer", trainer,
              "--dataset-config-file", str(REPO / "configs/datasets/oxford_pets.yaml"),
              "--config-file", str(REPO / "configs" / "trainers" / trainer / f"{cfg}.yaml"),
              "--output-dir", str(out), "--model-dir", str(tmp_path / "upstream"), "--load-epoch", str(epoch),
              "--eval-only", *kit.opts(), "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "new")
    log = (out / "log.txt").read_text()
    assert f"{model_name}/model.pth.tar-{epoch}" in log and len(accuracies(log)) == 1 and "# classes  2" in log
    return log


def parameters_a_step_changes(trainer) -> list:
    """One training step: the names of the learnable parameters it changed (frozen CLIP checked untouched)."""
    import torch

    learner = trainer.model.learnable
    clip_before = {k: v.clone() for k, v in trainer.backbone.state_dict().items()}
    before = {k: v.detach().clone() for k, v in learner.named_parameters()}
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 2
    trainer.forward_backward(next(iter(trainer.train_loader_x)))
    assert all(torch.equal(v, clip_before[k]) for k, v in trainer.backbone.state_dict().items())
    return sorted(k for k, v in learner.named_parameters() if not torch.equal(v, before[k]))


# ---- registry, scripts, reproduce commands --------------------------------------------------------
def test_every_registry_entry_is_runnable_and_its_group_matches_the_numbers_it_is_compared_with():
    """Properties, not a frozen list: entries are added by others (and a new one is no paper row)."""
    paper = json.loads((REPO / "paper" / "gopro_bmvc2023_results.json").read_text())["base2new"]["methods"]
    reported = json.loads((REPO / "paper" / "modern_baselines_reported.json").read_text())["base2new_average"]["rows"]
    assert len({m.label for m in METHODS.values()}) == len(METHODS)  # the report's rows are told apart by label
    for key, method in METHODS.items():
        assert method.key == key and re.fullmatch(r"[a-z][a-z0-9_]*(\+[a-z][a-z0-9_]*)*", key), key  # + joins plug-ins
        assert method.in_checkout(), f"{key}: no trainer file"
        configs = {method.b2n_cfg, method.xd_cfg, *method.b2n_dataset_cfg.values(), method.fewshot_cfg,
                   *method.fewshot_cfg_by_shots.values()} - {""}  # "": a protocol its upstream does not define
        assert configs and all(method.config_path(c).is_file() for c in configs), (key, configs)
        assert method.group in (PAPER, MODERN, VARIANT, OTHER), (key, method.group)
        assert (method.label in paper) == (method.group == PAPER) == method.paper_row, key
        # a modern baseline has reported numbers; a composed one (test_dept.py) where they are recorded
        assert method.group != MODERN or method.label in reported or method.plugins, key
    assert PAPER_METHODS == tuple(k for k, m in METHODS.items() if m.group == PAPER)
    assert MODERN_BASELINES == tuple(k for k, m in METHODS.items() if m.group == MODERN)
    assert METHODS["prograd"].cfg("b2n", "imagenet") == "vit_b16_ep50"  # a per-dataset config


def test_a_new_registry_entry_is_no_paper_row_unless_it_says_so():
    new = Method("mine", "Mine", "CoOp", "vit_b16_ctxv1", "vit_b16_ep50_ctxv1")
    assert new.group == OTHER and not new.paper_row


@pytest.mark.parametrize("key", STANDALONE)
def test_scripts_match_the_registry_and_load_the_last_epoch(key, tmp_path):
    method = METHODS[key]
    for name, cfg in (("base2new_train", method.b2n_cfg), ("base2new_test", method.b2n_cfg),
                      ("xd_train", method.xd_cfg), ("xd_test", method.xd_cfg)):
        setting = script_setting(key, name, tmp_path)
        assert (setting["TRAINER"], setting["CFG"]) == (method.trainer, cfg)
        config = REPO / "configs" / "trainers" / method.trainer / f"{cfg}.yaml"
        if key == "promptsrc" and not config.is_file():
            continue  # arrives with the PromptSRC trainer
        if name.endswith("_test"):
            assert setting["LOADEP"] == "last", name  # the training run's last epoch (next case)
            continue
        with open(config) as f:
            assert last_epoch_after(setting["argv"]) == CfgNode.load_cfg(f).OPTIM.MAX_EPOCH, (name, config)


def test_reproduce_defaults_stay_the_paper_rows_and_methods_adds_the_modern_ones(tmp_path):
    for table in ("table1", "xd", "table2"):
        assert plans.TABLES[table].methods == PAPER_METHODS
    asked = ("kgcoop", "prograd", "promptsrc")
    env = {"METHODS": " ".join(asked), "DATASETS": "imagenet", "SEEDS": "1", "OUTPUT": str(tmp_path)}
    args = jobs.build_parser().parse_args(["table1"])
    plan = plans.TABLES["table1"].build(plans.build_selection("table1", args, env))
    assert {job.script for job in plan.jobs} == {f"scripts/{k}/base2new_{p}.sh" for k in asked for p in ("train", "test")}
    assert dict(plan.jobs[2].env) == {"CFG": "vit_b16_ep50"}  # ProGrad on ImageNet


def test_kit_fits_promptsrc_depths_only_where_its_trainer_is(monkeypatch, tmp_path):
    keys = kit_module.tiny_prompt_depth_keys()
    has_promptsrc = (REPO / "trainers" / "promptsrc.py").is_file()
    assert ("TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT" in keys) == has_promptsrc
    fake_repo = tmp_path / "repo"
    (fake_repo / "trainers").mkdir(parents=True)
    (fake_repo / "trainers" / "promptsrc.py").write_text("")
    monkeypatch.setattr(kit_module, "REPO", fake_repo)
    assert kit_module.tiny_prompt_depth_keys()[-2:] == ["TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT",
                                                        "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION"]


def test_kit_options_name_each_key_once(kit):
    """Methods sharing a trainer (MaPLe and MaPLe + DePT) share its keys: printed once, not per method."""
    keys = kit.opts()[::2]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
    assert "TRAINER.MAPLE.PROMPT_DEPTH" in keys


# ---- the report ---------------------------------------------------------------------------------
def test_reported_numbers_are_self_consistent():
    for label, row in REPORTED.items():
        base, new, hm = row["values"]
        assert abs(harmonic_mean(base, new) - hm) < 0.011, label
    assert REPORTED["KgCoOp"]["values"] == [80.73, 73.6, 77.0]
    assert REPORTED["PromptSRC"]["values"] == [84.26, 76.1, 79.97]
    # Neither README prints results: the papers' averages, their source saying so.
    sources = json.loads((REPO / "paper" / "modern_baselines_reported.json").read_text())["sources"]
    for label, values in (("TCP", [84.13, 75.36, 79.51]), ("MMRL", [85.68, 77.16, 81.2])):
        assert REPORTED[label]["values"] == values
        assert "prints no results" in sources[REPORTED[label]["source"]]


PER_DATASET = json.loads((REPO / "paper" / "modern_baselines_reported.json").read_text())["base2new_per_dataset"]
PRINTED = 0.011   # two printed decimals: a mean or HM recomputed from printed numbers may differ by one in the last


def test_reported_per_dataset_triples_are_self_consistent_except_the_published_slips_listed():
    slips = set()
    for label, row in PER_DATASET["rows"].items():
        assert set(row["values"]) == set(B2N_DATASETS), label   # a transcribed table is whole
        for dataset, (base, new, hm) in row["values"].items():
            if abs(harmonic_mean(base, new) - hm) >= PRINTED:
                slips.add(f"{label} {dataset}")
    listed = {" ".join(note.split(":")[0].split()[:2]) for note in PER_DATASET["published_inconsistencies"]}
    assert slips == listed   # each printed HM that is off is listed, and each listed one is off


def test_reported_per_dataset_numbers_average_to_the_reported_average():
    """A transcription check: the 11 datasets' mean base and new are the table's own average row."""
    for label, row in PER_DATASET["rows"].items():
        for column in (0, 1):
            mean = sum(values[column] for values in row["values"].values()) / len(B2N_DATASETS)
            assert abs(mean - REPORTED[label]["values"][column]) < PRINTED, (label, column, mean)
        assert row["source"] == REPORTED[label]["source"], label


def test_modern_table_shows_the_reported_per_dataset_numbers_and_their_source(layout, tmp_path):  # noqa: F811
    b2n_logs(layout, METHODS["promptkd"], "dtd", 1, 80.0, 70.0)
    text = make_report(layout.root, "--seeds", "1", "--tables", "modern", "--methods", "promptkd", "--datasets", "dtd")
    row = row_of(text, "DTD", "PromptKD")
    assert row[2:10:3] == ["85.84", "71.37", "77.94"]   # base, new, HM (reported) from the README's table
    assert row[-1] == "zhengli97/PromptKD README.md, Table 1 (images/exp_results.png: the 11-dataset average and each dataset)"


def test_modern_table_puts_reported_numbers_beside_ours_and_table1_keeps_the_paper_rows(layout, tmp_path):  # noqa: F811
    for dataset in B2N_DATASETS:
        b2n_logs(layout, METHODS["kgcoop"], dataset, 1, 80.0, 70.0)
        b2n_logs(layout, METHODS["gopro"], dataset, 1, 84.0, 77.0)
    b2n_logs(layout, METHODS["prograd"], "dtd", 1, 75.0, 55.0)
    text = make_report(layout.root, "--seeds", "1", "--tables", "table1", "modern", "--csv", str(tmp_path / "csv"))
    table1, modern = text.split(f"## {MODERN_TITLE}")
    assert "KgCoOp" not in table1 and "Base (reported)" in modern
    assert modern.index("| KgCoOp") < modern.index("| ProGrad") < modern.index("| GOPro")  # baselines, then GOPro
    average = "Average over 11 datasets"
    text = modern
    kgcoop = row_of(text, average, "KgCoOp")
    assert kgcoop[1:4] == ["80.00", "80.73", "-0.73"] and kgcoop[4:7] == ["70.00", "73.60", "-3.60"]
    assert kgcoop[7] == f"{harmonic_mean(80, 70):.2f}" and kgcoop[8] == "77.00"
    assert row_of(text, average, "PromptSRC")[1:3] == ["n/a (0/11 datasets)", "84.26"]
    assert row_of(text, average, "GOPro")[2] == "84.21"
    dtd = row_of(text, "DTD", "ProGrad")
    assert dtd[1:4] == ["75.00", "–", "–"]  # ProGrad's repository prints no per-dataset numbers
    assert row_of(text, "DTD", "GOPro")[2] == "82.41"  # GOPro's paper
    rows = list(csv.DictReader((tmp_path / "csv" / "modern_baselines_base2new.csv").open()))
    record = next(r for r in rows if (r["row"], r["column"], r["metric"]) == ("KgCoOp", "average", "base"))
    assert float(record["paper"]) == 80.73 and float(record["ours"]) == 80.0


def test_no_modern_table_without_a_modern_baseline(layout):  # noqa: F811
    b2n_logs(layout, METHODS["gopro"], "dtd", 1, 80.0, 60.0)
    text = make_report(layout.root, "--methods", "gopro", "--seeds", "1", "--tables", "table1", "modern")
    assert MODERN_TITLE not in text and "Table 1" in text


@pytest.mark.slow
def test_table1_reproduce_with_modern_methods_on_the_kit_fills_the_modern_table(kit, tmp_path):
    output = tmp_path / "output"
    env = {"DATA": str(kit.data), "OUTPUT": str(output), "EXTRA_OPTS": " ".join(kit.opts()), "EPOCHS": "1",
           "METHODS": "kgcoop prograd", "DATASETS": "oxford_pets", "SEEDS": "1", "PYTHON": sys.executable}
    proc = run_script("reproduce/table1.sh", "--gpus", "", env=env, timeout=1800)
    assert "0 failed" in proc.stdout, proc.stdout
    text = make_report(output, "--tables", "modern", "--methods", "kgcoop", "prograd", "--seeds", "1",
                       "--datasets", "oxford_pets")
    assert text.index("| KgCoOp ") < text.index("| ProGrad ")
    for label, reported in (("KgCoOp", "80.73"), ("ProGrad", "82.48")):
        row = row_of(text, "Average over the 1 listed datasets", label)
        assert row[2] == reported and row[3] == "–"  # one dataset: no Δ against the 11-dataset average
        pets = row_of(text, "OxfordPets", label)
        # EPOCHS=1 and the kit's options are not the paper's settings: every cell carries a footnote
        assert all(re.fullmatch(r"[\d.]+ (\[\d+\])+", cell) for cell in (pets[1], pets[4])), pets
        assert 0 <= float(pets[1].split()[0]) <= 100 and 0 <= float(pets[4].split()[0]) <= 100
