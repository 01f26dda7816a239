"""Run identity (runs.identity): train.py records the settings of every run, tells whether a
folder holds the run asked for, and the scripts and the job runner skip only runs made with the
settings asked; a folder made with other settings is shown and never skipped silently.

The in-process cases build configs with the real train.py (``cli.setup_cfg``) and run the real
``train.main`` on the tiny kit; the script cases run the real scripts.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, SCRIPT_KNOBS, build_cfg, script_env
from test_bad_input import COOP_CFG, ONE_EPOCH, args, train_main  # noqa: F401 (train_main: a fixture)

from runs import jobs, plans, steps
from runs import identity as run_identity
from runs.identity import EVAL_ONLY, LOAD_EPOCH, MODEL_DIGEST


def settings(kit, tmp_path, *opts, trainer="GOPro", config="vit_b16", out="out"):
    return run_identity.settings_of(build_cfg(kit, tmp_path / out, trainer, config, *opts))


def check(train_main, argv) -> int:
    """``train.py --check-finished ARGV`` in this process: its exit status."""
    with pytest.raises(SystemExit) as stop:
        train_main("--check-finished", *argv)
    return stop.value.code


# --------------------------------------------------------------------------------------------
# The rule
# --------------------------------------------------------------------------------------------
def test_settings_hold_what_changes_results_and_leave_out_paths_speed_knobs_and_other_trainers(kit, tmp_path):
    plain = settings(kit, tmp_path)
    assert plain["OPTIM.MAX_EPOCH"] == 50 and plain["TRAINER.GOPRO.W_CON"] == 1.0 and plain[EVAL_ONLY] is False
    assert plain["INPUT.SIZE"] == [32, 32]  # tuples are stored as JSON lists
    for key in ("OUTPUT_DIR", "DATASET.ROOT", "MODEL.BACKBONE.PATH", "DATALOADER.NUM_WORKERS", "TRAIN.PRINT_FREQ",
                "TRAINER.GOPRO.TEXT_CHUNK", "TRAINER.GOPRO.TRUNCATE_TEXT", "TRAINER.GOPRO.CHECKPOINT_TEXT",
                "TRAINER.COOP.N_CTX"):
        assert key not in plain, key
    digest = run_identity.digest_of(plain)
    same = settings(kit, tmp_path, "DATALOADER.NUM_WORKERS", "3", "TRAINER.GOPRO.TEXT_CHUNK", "64",
                    "TRAINER.GOPRO.CHECKPOINT_TEXT", "True", "TRAINER.COOP.N_CTX", "8", out="elsewhere")
    assert run_identity.digest_of(same) == digest
    other = settings(kit, tmp_path, "OPTIM.MAX_EPOCH", "2")
    assert run_identity.digest_of(other) != digest
    assert [str(d) for d in run_identity.differences(other, plain)] == ["OPTIM.MAX_EPOCH 2 ≠ 50"]
    # A key only one side knows (an option added by a later code change) is not a difference.
    assert run_identity.differences({**plain, "TRAINER.GOPRO.NEW_OPTION": 1}, plain) == []


def test_the_config_printed_into_a_log_gives_the_same_settings(kit, tmp_path, capsys):
    """Folders from before run.json are read from the arguments and config train.py prints."""
    import train
    from runs import cli

    argv = args(kit, tmp_path / "run", "CoOp", COOP_CFG, *ONE_EPOCH, flags=("--eval-only", "--load-epoch", "3"))
    parsed = cli.build_parser().parse_args([str(a) for a in argv])
    cfg = cli.setup_cfg(parsed)
    train.print_banner("Arguments")
    for key in sorted(vars(parsed)):
        print(f"{key}: {getattr(parsed, key)}")
    train.print_banner("Config")
    print(cfg)
    print("Collecting env info ...\n** System info **\nPyTorch version: 2.0\n")
    log = tmp_path / "log.txt"
    log.write_text(capsys.readouterr().out)
    from_log = run_identity.settings_from_log(log)
    assert from_log == run_identity.settings_of_args(cfg, parsed)
    assert from_log[EVAL_ONLY] is True and from_log[LOAD_EPOCH] == 3
    assert from_log["TRAINER.COOP.CTX_INIT"] == "a photo of a"


# --------------------------------------------------------------------------------------------
# train.py
# --------------------------------------------------------------------------------------------
def test_train_py_records_an_evaluation_and_checks_a_folder_against_the_settings_asked(kit, tmp_path, train_main):
    out = tmp_path / "zero-shot"
    argv = args(kit, out, "ZeroshotCLIP", COOP_CFG, flags=("--eval-only",))
    assert check(train_main, argv) == run_identity.EXIT_TODO  # nothing there yet
    train_main(*argv)
    identity = json.loads((out / "run.json").read_text())
    assert identity["settings"][EVAL_ONLY] is True and identity["settings"]["TRAINER.NAME"] == "ZeroshotCLIP"
    assert len(identity["digest"]) == 12 and "NAME: ZeroshotCLIP" in (out / "config.yaml").read_text()
    assert check(train_main, argv) == run_identity.EXIT_DONE
    assert check(train_main, [*argv, "DATALOADER.TEST.BATCH_SIZE", "7"]) == run_identity.EXIT_DONE  # a speed knob
    new_classes = [*argv, "DATASET.SUBSAMPLE_CLASSES", "new"]
    assert check(train_main, new_classes) == run_identity.EXIT_STALE
    # A folder from before run.json: its log tells the settings.
    (out / "run.json").unlink()
    assert check(train_main, argv) == run_identity.EXIT_DONE
    assert check(train_main, new_classes) == run_identity.EXIT_STALE


@pytest.mark.parametrize("record, why", [
    ("[]", "not a record of train.py"),
    ('{"settings": {"OPTIM.MAX_EPOCH": "fifty", "TRAINER.NAME": "CoOp"}}', "OPTIM.MAX_EPOCH is 'fifty'"),
])
def test_a_malformed_run_json_counts_as_no_record_and_is_named(kit, tmp_path, train_main, capsys, record, why):
    from runs.records import last_epoch

    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(record)
    argv = args(kit, out, "ZeroshotCLIP", COOP_CFG, flags=("--eval-only",))
    if record == "[]":  # not an object: the folder counts as one without a record
        assert check(train_main, argv) == run_identity.EXIT_TODO
    with pytest.raises(FileNotFoundError, match="no training run to take the last epoch of"):
        last_epoch(str(out))  # --load-epoch last: nothing recorded, no checkpoints
    assert f"ignoring {out / 'run.json'}: {why}" in capsys.readouterr().err


def test_a_run_clears_temp_files_a_killed_write_left_in_its_folder(kit, tmp_path, train_main):
    out = tmp_path / "zero-shot"
    out.mkdir()
    leftover = out / ".run.json.0badc0de.tmp"  # what a kill while run.json was written leaves
    leftover.write_text("{")
    train_main(*args(kit, out, "ZeroshotCLIP", COOP_CFG, flags=("--eval-only",)))
    assert not leftover.exists() and (out / "run.json").is_file()


def test_a_run_that_fails_before_it_starts_leaves_nothing_that_looks_like_a_run(kit, tmp_path, train_main):
    out, no_model = tmp_path / "eval", tmp_path / "no-model"
    no_model.mkdir()
    with pytest.raises(Exception):
        train_main(*args(kit, out, "CoOp", COOP_CFG, *ONE_EPOCH,
                         flags=("--eval-only", "--model-dir", no_model, "--load-epoch", "1")))
    left = sorted(p.name for p in out.iterdir())
    assert not {"run.json", "config.yaml", "log.txt"} & set(left), left
    assert any(name.startswith("log.txt-failed-") for name in left), left  # the failure's log, set aside


@pytest.mark.slow
def test_training_refuses_a_folder_of_other_settings_and_evaluations_name_their_model(kit, tmp_path, train_main):
    out = tmp_path / "train"
    argv = args(kit, out, "CoOp", COOP_CFG, *ONE_EPOCH)
    train_main(*argv)
    identity = json.loads((out / "run.json").read_text())
    assert identity["settings"]["OPTIM.MAX_EPOCH"] == 1 and check(train_main, argv) == run_identity.EXIT_DONE
    two_epochs = [*argv, "OPTIM.MAX_EPOCH", "2"]
    assert check(train_main, two_epochs) == run_identity.EXIT_STALE
    with pytest.raises(ValueError, match=r"other settings \(OPTIM\.MAX_EPOCH 1 ≠ 2; .*another --output-dir"):
        train_main(*two_epochs)  # resuming would mix the two runs

    evaluation = tmp_path / "eval"
    train_main(*args(kit, evaluation, "CoOp", COOP_CFG, *ONE_EPOCH,
                     flags=("--eval-only", "--model-dir", out, "--load-epoch", "1")))
    evaluated = json.loads((evaluation / "run.json").read_text())["settings"]
    assert evaluated[LOAD_EPOCH] == 1 and evaluated[MODEL_DIGEST] == identity["digest"]
    # An evaluation may be redone in place with other settings (nothing to mix): it is recorded anew.
    train_main(*args(kit, evaluation, "CoOp", COOP_CFG, *ONE_EPOCH, "DATASET.SUBSAMPLE_CLASSES", "new",
                     flags=("--eval-only", "--model-dir", out, "--load-epoch", "1")))
    assert json.loads((evaluation / "run.json").read_text())["settings"]["DATASET.SUBSAMPLE_CLASSES"] == "new"


# --------------------------------------------------------------------------------------------
# The job runner
# --------------------------------------------------------------------------------------------
def record_runs(job: plans.Job, env: dict) -> None:
    """Make the job's folders as a finished run of ``env``'s settings would leave them: the real
    run.json of the real config, and a log with the final result."""
    from runs import cli

    for run in steps.command_runs(job.command(), {**env, **dict(job.env)}):
        parsed = cli.build_parser().parse_args(list(run.argv))
        run.folder.mkdir(parents=True)
        run_identity.record(cli.setup_cfg(parsed), parsed)
        end = "=> result" if run.eval_only else "Finish training\n=> result"
        (run.folder / "log.txt").write_text(f"{end}\n* accuracy: 50.0%\n")


def test_the_runner_skips_only_runs_made_with_the_settings_asked(kit, tmp_path, monkeypatch, capsys):
    base = {"OUTPUT": str(tmp_path / "out"), "DATA": str(kit.data), "PYTHON": sys.executable,
            "EXTRA_OPTS": " ".join(kit.opts()), "METHODS": "coop", "DATASETS": "dtd", "SEEDS": "1"}
    for knob in SCRIPT_KNOBS:  # this shell's overrides: the runner reads os.environ itself
        monkeypatch.delenv(knob, raising=False)
    for key, value in {**base, "EPOCHS": "1"}.items():
        monkeypatch.setenv(key, value)
    env = jobs.script_environment(os.environ)
    plan = plans.TABLES["table1"].build(plans.build_selection("table1", jobs.build_parser().parse_args(["table1"]), env))
    record_runs(plan.jobs[0], env)  # the training run, made with EPOCHS=1
    states = jobs.job_states(plan.jobs, env)
    assert [states[j.id].label for j in plan.jobs] == ["done", "todo"]

    monkeypatch.setenv("EPOCHS", "2")
    assert jobs.main(["table1", "--dry-run"]) == 0
    assert "[stale: OPTIM.MAX_EPOCH 1 ≠ 2] coop/b2n_train/dtd/seed1" in capsys.readouterr().out
    assert jobs.main(["table1", "--gpus", ""]) == 3  # nothing runs
    assert "--rerun-stale" in capsys.readouterr().err and not (tmp_path / "out" / "jobs").exists()


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------
def footnote(text: str, cell: str) -> str:
    """The settings listed by the footnotes a report cell ends with (``... [1][2]``: one per setting)."""
    marks = re.findall(r"\[\d+\]", cell.rsplit(" ", 1)[1])
    listed = dict(line[2:].split(" ", 1) for line in text.splitlines() if re.match(r"\* \[\d+\] ", line))
    return ", ".join(listed[mark] for mark in marks)


def paper_environment(output) -> dict:
    """The scripts' environment with the paper's settings (none of this shell's overrides), writing to ``output``."""
    return jobs.script_environment(script_env(OUTPUT=str(output)))


def test_the_report_marks_numbers_from_other_settings_and_never_averages_mixed_seeds(tmp_path):
    from tools.experiments import report
    from runs.layout import Layout
    from runs.methods import METHODS
    from test_report import row_of

    paper = paper_environment(tmp_path)
    flags = jobs.build_parser().parse_args(["table1", "--methods", "coop", "gopro", "--datasets", "dtd",
                                            "--seeds", "1", "2"])
    plan = plans.table1(plans.build_selection("table1", flags, paper))
    for job in plan.jobs:  # CoOp: both seeds with 2 epochs; GOPro: seed 1 with 2 epochs, seed 2 as the paper
        record_runs(job, {**paper, "EPOCHS": "2"} if "coop" in job.id or "seed1" in job.id else paper)
    request = report.Request(Layout(tmp_path), report.Paper.load(), (METHODS["coop"], METHODS["gopro"]), (1, 2),
                             ("dtd",))
    text = report.to_markdown([report.table1(request)], "")
    coop, gopro = row_of(text, "DTD", "CoOp"), row_of(text, "DTD", "GOPro")
    assert coop[1].startswith("50.00 ± 0.00 [") and footnote(text, coop[1]) == "OPTIM.MAX_EPOCH=2"
    assert footnote(text, coop[4]) == "--load-epoch=2, OPTIM.MAX_EPOCH=2"  # the evaluation loads epoch 2, not 50
    assert gopro[1] == "n/a (seeds differ: OPTIM.MAX_EPOCH)" and gopro[7] == "n/a (seeds differ)"
    average = row_of(text, "Average over the 1 listed datasets", "GOPro")
    assert average[1] == "n/a (0/1 datasets)"  # not averaged either
    records = {(r["row"], r["metric"]): r for r in report.table1(request).records if r["column"] == "dtd"}
    assert records[("CoOp", "base")]["settings"] == "OPTIM.MAX_EPOCH=2"


# --------------------------------------------------------------------------------------------
# The scripts
# --------------------------------------------------------------------------------------------
def script(name: str, *argv: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / name), *argv], cwd=REPO, capture_output=True, text=True,
                          env=script_env(**env), timeout=900)


def test_quoted_extra_opts_reach_the_config_whole(kit, tmp_path):
    env = script_env(OUTPUT=str(tmp_path), DATA=str(kit.data),
                     EXTRA_OPTS=" ".join(kit.opts()) + " TRAINER.GOPRO.CTX_INIT 'a blurry photo of a'")
    train_run, = steps.command_runs(["bash", "scripts/gopro/base2new_train.sh", "dtd", "1"], env)
    assert run_identity.asked_settings(train_run.argv)["TRAINER.GOPRO.CTX_INIT"] == "a blurry photo of a"


@pytest.mark.slow
def test_scripts_stop_at_a_stale_folder_unless_rerun_stale_moves_it_aside(kit, tmp_path):
    env = {"DATA": str(kit.data), "OUTPUT": str(tmp_path), "EXTRA_OPTS": " ".join(kit.opts()), "EPOCHS": "1"}
    first = script("coop/base2new_train.sh", "oxford_pets", "1", env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    folder = next(tmp_path.glob("base2new/train_base/oxford_pets/*/CoOp/*/seed1"))
    again = script("coop/base2new_train.sh", "oxford_pets", "1", env=env)
    assert again.returncode == 0 and "Results exist at" in again.stdout

    stale = script("coop/base2new_train.sh", "oxford_pets", "1", env={**env, "EPOCHS": "2"})
    assert stale.returncode == 3, stale.stderr[-3000:]
    assert "[stale: OPTIM.MAX_EPOCH 1 ≠ 2]" in stale.stderr and "RERUN_STALE=1" in stale.stderr
    assert json.loads((folder / "run.json").read_text())["settings"]["OPTIM.MAX_EPOCH"] == 1  # untouched

    rerun = script("coop/base2new_train.sh", "oxford_pets", "1", env={**env, "EPOCHS": "2", "RERUN_STALE": "1"})
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert json.loads((folder / "run.json").read_text())["settings"]["OPTIM.MAX_EPOCH"] == 2
    aside = list(folder.parent.glob("seed1.stale-*"))
    assert len(aside) == 1 and json.loads((aside[0] / "run.json").read_text())["settings"]["OPTIM.MAX_EPOCH"] == 1


def test_the_report_averages_seeds_that_build_on_their_own_seeds_teacher(tmp_path):
    """Each PromptKD seed distils from the teacher run of its own seed: the teachers' digests differ
    between seeds as the model folders do, which is no reason to refuse the mean."""
    from tools.experiments import report
    from runs.layout import Layout
    from runs.methods import METHODS
    from test_report import row_of

    paper = paper_environment(tmp_path)
    flags = jobs.build_parser().parse_args(["table1", "--methods", "promptkd", "--datasets", "dtd", "--seeds", "1", "2"])
    for job in plans.table1(plans.build_selection("table1", flags, paper)).jobs:  # teachers before their students
        record_runs(job, paper)
    student = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("base2new/train_base/dtd/*/PromptKD/*/seed*/run.json"))]
    digests = {s["settings"]["TRAINER.PROMPTKD.TEACHER_RUN digest"] for s in student}
    assert len(student) == 2 and len(digests) == 2  # two seeds, two teachers
    request = report.Request(Layout(tmp_path), report.Paper.load(), (METHODS["promptkd"],), (1, 2), ("dtd",))
    row = row_of(report.to_markdown([report.table1(request)], ""), "DTD", "PromptKD")
    assert row[1] == "50.00 ± 0.00" and row[4] == "50.00 ± 0.00"
