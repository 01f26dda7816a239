"""Bad input gets an error that names what is wrong and how to fix it.

Most cases call ``train.main`` in this process (the real entry point minus interpreter start-up,
so each case costs well under a second); ``test_train_e2e.py`` shows that the same exceptions
reach stderr of a real ``python train.py`` with a non-zero exit status.
"""
from __future__ import annotations

import errno
import json
import os
import pickle
import re
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import REPO, accuracies, make_trainer, run_train, script_env

DATASET_CFG = str(REPO / "configs/datasets/oxford_pets.yaml")
COOP_CFG = str(REPO / "configs/trainers/CoOp/vit_b16_ctxv1.yaml")
GOPRO_CFG = str(REPO / "configs/trainers/GOPro/vit_b16.yaml")
ONE_EPOCH = ("OPTIM.MAX_EPOCH", "1", "OPTIM.WARMUP_EPOCH", "0", "DATASET.NUM_SHOTS", "16")


@pytest.fixture
def train_main():
    """``train_main(*argv)``: run ``train.main`` in-process; sys.stdout (teed to log.txt) is restored."""
    import train
    from dassl.utils.logger import Logger
    from runs.cli import build_parser

    def run(*argv) -> None:
        try:
            train.main(build_parser().parse_args([str(a) for a in argv]))
        finally:
            if isinstance(sys.stdout, Logger):  # the tee train.py set up, over whatever pytest captures into
                sys.stdout.close()
                sys.stdout = sys.stdout.console

    return run


def args(kit, out, trainer="CoOp", config=COOP_CFG, *opts, root=None, dataset=DATASET_CFG, flags=()):
    return ["--root", root or kit.data, "--seed", "1", "--trainer", trainer, "--dataset-config-file", dataset,
            "--config-file", config, "--output-dir", out, *flags, *kit.opts(), *opts]


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
def test_corrupt_image_is_named_and_skip_corrupt_skips_and_counts(kit, tmp_path, train_main):
    data = tmp_path / "DATA"
    shutil.copytree(kit.data, data)
    pets = data / "oxford_pets"
    split = json.loads((pets / "split_zhou_OxfordPets.json").read_text())
    bad_train, bad_test = (pets / "images" / split[key][0][0] for key in ("train", "test"))
    for path in (bad_train, bad_test):
        path.write_bytes(b"\xff\xd8 not really a jpeg")

    unreadable = rf'Cannot load image "{re.escape(str(bad_test))}".*DATALOADER\.SKIP_CORRUPT True'
    with pytest.raises(OSError, match=unreadable):
        train_main(*args(kit, tmp_path / "fail", "ZeroshotCLIP", root=data, flags=("--eval-only",)))

    out = tmp_path / "skip"
    with pytest.warns(UserWarning, match="Skipping unreadable image"):
        train_main(*args(kit, out, "CoOp", COOP_CFG, *ONE_EPOCH, "DATALOADER.SKIP_CORRUPT", "True", root=data))
    log = (out / "log.txt").read_text()
    assert "Skipped 1 unreadable image(s) of the train_x data so far (DATALOADER.SKIP_CORRUPT" in log
    assert f"): {bad_train}\n" in log and "of the test data so far" in log and f"): {bad_test}\n" in log
    assert "* total: 50\n" in log  # the bad test image was replaced, not dropped


def test_empty_class_folder_is_named(kit, tmp_path, train_main):
    from tools.kit.make_fixture_datasets import write_fixture

    dtd = write_fixture("dtd", tmp_path / "DATA")
    empty = sorted((dtd / "images").iterdir())[0]
    for image in empty.iterdir():
        image.unlink()
    with pytest.raises(ValueError, match=rf"class folder {re.escape(str(empty))} has 0 images.*Add images"):
        train_main(*args(kit, tmp_path / "out", "ZeroshotCLIP", root=tmp_path / "DATA",
                         dataset=REPO / "configs/datasets/dtd.yaml", flags=("--eval-only",)))


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("yaml_text, opts, message", [
    ("OPTIM:\n  ZZZ: 1\n", [], r"^Unknown config key 'OPTIM\.ZZZ' \(in method config file \S*bad\.yaml\)\. "
                                r"Keys at OPTIM: ADAM_BETA1, .*WEIGHT_DECAY\.$"),
    ("TRAINER:\n  COOP:\n    N_CTXX: 4\n", [], r"^Unknown config key 'TRAINER\.COOP\.N_CTXX' \(in method config "
                                              r"file \S*bad\.yaml\)\. Did you mean: TRAINER\.COOP\.N_CTX\b"),
    ("OPTIM:\n  MAX_EPOCH: two\n", [], r"bad\.yaml.*OPTIM\.MAX_EPOCH"),
    ("OPTIM: [1\n", [], r"bad\.yaml: not valid YAML"),
    ("", ["OPTIM.MAX_EPOCHS", "1"], r"^Unknown config key 'OPTIM\.MAX_EPOCHS' \(from the command line\)\. "
                                    r"Did you mean: OPTIM\.MAX_EPOCH\?$"),
    ("", ["TRAINER.COOOP.N_CTX", "2"], r"Did you mean: TRAINER\.COCOOP\.N_CTX or TRAINER\.COOP\.N_CTX\?$"),
    ("", ["OPTIM.MAX_EPOCH"], r"KEY VALUE pairs; 'OPTIM\.MAX_EPOCH' has no value"),
    ("", ["TRAINER.COOP.N_CTX", "'four'"], r"TRAINER\.COOP\.N_CTX"),
    ("", ["TRAINER.COOP.PREC", "fp8"], r"TRAINER\.COOP\.PREC must be one of .*fp32"),
    ("", ["DATASET.NAME", "OxfordPet"], r"do you mean \[OxfordPets\]"),
], ids=["yaml-unknown-key", "yaml-unknown-trainer-key", "yaml-bad-type", "yaml-syntax", "cli-unknown-key",
        "cli-unknown-node", "cli-odd-pairs", "cli-bad-type", "bad-choice", "unknown-dataset"])
def test_bad_config_names_the_key_and_the_fix(kit, tmp_path, train_main, yaml_text, opts, message):
    config = COOP_CFG
    if yaml_text:
        config = tmp_path / "bad.yaml"
        config.write_text(yaml_text)
    with pytest.raises(ValueError, match=message):
        train_main(*args(kit, tmp_path / "out", "CoOp", config, *opts))


@pytest.mark.parametrize("trainer, root, opts, message", [
    ("GoPro", None, [], r"Unknown trainer \(--trainer / TRAINER\.NAME\).*do you mean \[GOPro\]"),
    ("CoOp", "/nowhere", [], r"DATASET\.ROOT \(--root\) does not exist: /nowhere"),
    ("CoOp", None, ["DATASET.NAME", "OxfordPet"], r"Unknown dataset .*do you mean \[OxfordPets\]"),
], ids=["trainer", "root", "dataset"])
def test_bad_names_and_paths_fail_before_the_config_dump(kit, tmp_path, capsys, train_main, trainer, root, opts,
                                                         message):
    with pytest.raises((ValueError, OSError), match=message):
        train_main(*args(kit, tmp_path / "out", trainer, COOP_CFG, *opts, root=root))
    assert "Config" not in capsys.readouterr().out  # nothing printed: the error is all the user sees


def test_a_malicious_clip_file_is_refused_without_running_it_or_advising_to(kit, tmp_path, train_main):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "clip.pt"
    torch.save({"state_dict": RunsCode(f"open({str(marker)!r}, 'w').close()")}, evil)
    with pytest.raises(RuntimeError) as refused:
        train_main(*args(kit, tmp_path / "out", "ZeroshotCLIP", flags=("--eval-only",)), "MODEL.BACKBONE.PATH", evil)
    message = str(refused.value)
    assert message.startswith(f"{evil} is not a safe CLIP weights file: neither a TorchScript CLIP archive nor")
    assert "Python callable exec," in message and "ViT-B-16.pt" in message and "state_dict()" in message
    assert "weights_only" not in message and refused.value.__cause__ is None  # nor torch's advice, chained
    assert not marker.exists()


class RunsCode:
    """Unpickling an instance runs ``source`` (what a malicious checkpoint does)."""

    def __init__(self, source: str):
        self.source = source

    def __reduce__(self):
        return exec, (self.source,)


def test_a_fatal_error_ends_the_console_with_one_line_and_keeps_the_traceback_in_the_log(kit, tmp_path):
    typo = args(kit, tmp_path / "typo", "CoOp", COOP_CFG, "OPTIM.MAX_EPOCHS", "1")
    line = "Error: Unknown config key 'OPTIM.MAX_EPOCHS' (from the command line). Did you mean: OPTIM.MAX_EPOCH?"
    proc = run_train(*typo, check=False)
    assert proc.returncode == 1 and proc.stderr.splitlines()[-1] == line
    assert "Traceback" not in proc.stderr and "Config" not in proc.stdout  # found before the config dump
    debug = run_train(*typo, check=False, env={"GOPRO_DEBUG": "1"})
    assert "Traceback (most recent call last)" in debug.stderr and debug.stderr.splitlines()[-1] == line

    out, junk = tmp_path / "late", tmp_path / "clip.pt"
    junk.write_bytes(b"not a checkpoint")
    proc = run_train(*args(kit, out, "ZeroshotCLIP", flags=("--eval-only",)), "MODEL.BACKBONE.PATH", str(junk),
                     check=False)
    assert proc.returncode == 1 and "** Config **" in proc.stdout  # found while building the model
    assert proc.stderr.splitlines()[-1].startswith(f"Error: {junk} is not a safe CLIP weights file")
    # A run that failed before it started keeps its log aside (log.txt-failed-<time>), named in the message.
    [failed_log] = out.glob("log.txt-failed-*")
    assert not (out / "log.txt").exists()
    assert "Traceback" not in proc.stderr and f"(traceback: in {failed_log}, or rerun with" in proc.stderr
    assert "Traceback (most recent call last)" in failed_log.read_text()


@pytest.mark.parametrize("error, line", [
    (ValueError("Bad thing.\nDo this."), "Error: Bad thing. Do this."),  # explained input errors: the message
    (KeyError("x"), "Error: KeyError: 'x'"),  # anything else is likely a bug: its type too
    (AssertionError(), "Error: AssertionError"),
])
def test_the_error_line_is_one_line_and_names_unexplained_error_types(capsys, monkeypatch, error, line):
    import train

    monkeypatch.delenv(train.DEBUG_ENV, raising=False)
    train.report_fatal(error)
    assert capsys.readouterr().err.splitlines()[-1] == line


def test_missing_clip_weights_offline_say_where_to_put_them(kit, tmp_path, train_main, monkeypatch):
    import clip

    from trainers import clip_backbone

    def offline(url, root):
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr(clip.clip, "_download", offline)
    monkeypatch.setattr(clip_backbone, "DEFAULT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(clip_backbone.WEIGHTS_DIR_ENV, str(tmp_path / "weights"))
    with pytest.raises(FileNotFoundError, match=r"CLIP weights for ViT-B/16 are not on disk.*ViT-B-16\.pt.*"
                                                r"MODEL\.BACKBONE\.PATH"):
        train_main(*args(kit, tmp_path / "out", "ZeroshotCLIP", flags=("--eval-only",)), "MODEL.BACKBONE.PATH", "")
    with pytest.raises(FileNotFoundError, match=r"MODEL\.BACKBONE\.PATH='/nowhere/clip\.pt' does not exist"):
        train_main(*args(kit, tmp_path / "out", "ZeroshotCLIP", flags=("--eval-only",)),
                   "MODEL.BACKBONE.PATH", "/nowhere/clip.pt")


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
def test_nan_loss_stops_with_epoch_step_and_hint(kit, tmp_path, train_main):
    out = tmp_path / "out"
    with pytest.raises(FloatingPointError, match=r"at epoch 1, batch 2!.*TRAINER\.COOP\.PREC fp32.*lower OPTIM\.LR"):
        train_main(*args(kit, out, "CoOp", COOP_CFG, *ONE_EPOCH, "OPTIM.LR", "1e30"))
    assert not (out / "prompt_learner").exists()  # nothing was saved from the diverged run


# --------------------------------------------------------------------------------------------
# --model-dir holding something else
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_runs(kit, tmp_path_factory):
    """One-epoch CoOp and GOPro runs (their folders hold prompt_learner/ and gopro/)."""
    root = tmp_path_factory.mktemp("runs")
    for name, config in (("CoOp", "vit_b16_ctxv1"), ("GOPro", "vit_b16")):
        make_trainer(kit, root / name, name, config, *ONE_EPOCH).train()
    return root


@pytest.mark.parametrize("trainer, config, run, opts, epoch, message", [
    ("GOPro", GOPRO_CFG, "CoOp", [], 1,
     r"No model at .*CoOp/gopro/model\.pth\.tar-1\. Check --model-dir \(it must hold a 'gopro' folder, i\.e\. a "
     r"run of trainer GOPro\)"),
    ("CoOp", COOP_CFG, "CoOp", [], 2, r"model\.pth\.tar-2.*--load-epoch \(files there: model\.pth\.tar-1\)"),
    ("CoOp", COOP_CFG, "GOPro-as-CoOp", [], 1,
     r"does not fit this model: missing \['ctx'\].*prompt_learner\.ctx.*another trainer"),
    ("CoOp", COOP_CFG, "CoOp", ["TRAINER.COOP.CTX_INIT", "''", "TRAINER.COOP.N_CTX", "8"], 1,
     r"ctx: checkpoint \(4, \d+\) vs model \(8, \d+\).*N_CTX"),
], ids=["coop-run-for-gopro", "missing-epoch", "gopro-checkpoint-for-coop", "n_ctx-mismatch"])
def test_model_dir_from_another_trainer_or_shape_names_the_mismatch(kit, tmp_path, train_main, trained_runs,
                                                                     trainer, config, run, opts, epoch, message):
    if run == "GOPro-as-CoOp":  # GOPro's checkpoint where CoOp looks for its own
        shutil.copytree(trained_runs / "GOPro" / "gopro", tmp_path / run / "prompt_learner")
        model_dir = tmp_path / run
    else:
        model_dir = trained_runs / run
    with pytest.raises((FileNotFoundError, RuntimeError), match=message):
        train_main(*args(kit, tmp_path / "eval", trainer, config, *opts,
                         flags=("--eval-only", "--model-dir", model_dir, "--load-epoch", epoch)))


def test_a_malicious_checkpoint_in_model_dir_is_refused_without_running_it_or_advising_to(kit, tmp_path, train_main):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "run" / "prompt_learner" / "model.pth.tar-1"
    evil.parent.mkdir(parents=True)
    torch.save({"state_dict": RunsCode(f"open({str(marker)!r}, 'w').close()"), "epoch": 1}, evil)
    with pytest.raises(pickle.UnpicklingError) as refused:
        train_main(*args(kit, tmp_path / "eval", flags=("--eval-only", "--model-dir", tmp_path / "run",
                                                        "--load-epoch", "1")))
    message = str(refused.value)
    assert message.startswith(f'Checkpoint "{evil}" holds objects other than tensors and plain data (the Python '
                              "callable exec, which unpickling would call), so it was not loaded and nothing in it ran.")
    assert "weights_only" not in message and refused.value.__cause__ is None  # nor torch's advice, chained
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# Output folder
# --------------------------------------------------------------------------------------------
def test_rerunning_a_finished_run_goes_straight_to_the_final_test(kit, tmp_path, train_main):
    out = tmp_path / "run"
    argv = args(kit, out, "CoOp", COOP_CFG, *ONE_EPOCH)
    train_main(*argv)
    checkpoint = out / "prompt_learner" / "model.pth.tar-1"
    first_log, first_bytes = (out / "log.txt").read_text(), checkpoint.read_bytes()

    train_main(*argv)
    log = (out / "log.txt").read_text()
    assert "Found checkpoint at" in log and "Previous epoch: 1" in log and "epoch [" not in log
    assert accuracies(log) == accuracies(first_log) and checkpoint.read_bytes() == first_bytes
    assert [p.name.startswith("log.txt-") for p in out.iterdir()].count(True) == 1  # the first log, kept


def test_scripts_skip_a_finished_run_and_resume_an_unfinished_one(tmp_path):
    """The finish test behind the scripts' skip (train.py --check-finished, runs/identity.py)."""
    from runs.identity import end_signals, folder_state

    def finished(log: str) -> bool:
        (tmp_path / "log.txt").write_text(log)
        return folder_state(tmp_path, end_signals(eval_only=False), dict).done

    assert finished("epoch [1/1] ...\nFinish training\n=> result\n* total: 50\n* accuracy: 40.0%\n")
    assert not finished("epoch [1/2] ...\n")  # killed mid-training: the script runs it again (resume)
    assert not finished("* accuracy: 40.0%\nepoch [1/2] ...\n")  # an accuracy from before training


@pytest.mark.parametrize("script, args, message", [
    ("gopro/base2new_train.sh", [], "Usage: base2new_train.sh DATASET SEED"),
    ("coop/base2new_test.sh", ["oxford_pets"], "Usage: base2new_test.sh DATASET SEED"),
    ("maple/xd_train.sh", ["1", "2"], "Usage: xd_train.sh SEED"),
    ("gopro/ablation.sh", ["ce", "oxford_pets"], "Usage: ablation.sh ROW DATASET SEED"),
    ("zsclip/zeroshot.sh", [], "Usage: zeroshot.sh DATASET [all|base|new]"),
    ("gopro/base2new_train.sh", ["imagenett", "1"], "Unknown dataset 'imagenett' (no configs/datasets/imagenett.yaml)"),
    ("cocoop/xd_test.sh", ["oxfordpets", "1"], "Known: caltech101 dtd eurosat"),
])
def test_scripts_refuse_wrong_arguments_before_running_anything(tmp_path, script, args, message):
    env = script_env(OUTPUT=str(tmp_path))  # checked by runs.steps; no train.py run
    done = subprocess.run(["bash", str(REPO / "scripts" / script), *args], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not any(tmp_path.iterdir())


def test_output_folder_that_is_a_file_is_refused_up_front(kit, tmp_path, train_main):
    blocker = tmp_path / "out"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match=r"Cannot write to the output directory .*out.*writable --output-dir"):
        train_main(*args(kit, blocker, "CoOp", COOP_CFG, *ONE_EPOCH))
    with pytest.raises(OSError, match=r"Cannot write to the output directory .*out/sub.*Not a directory"):
        train_main(*args(kit, blocker / "sub", "CoOp", COOP_CFG, *ONE_EPOCH))


def epoch_two_checkpoint(call_number: int, call_args: tuple) -> bool:
    """Is this torch.save / os.replace call writing epoch 2's checkpoint? (torch.save gets a file
    object, so count: call 1 = epoch 1; os.replace gets the destination path.)"""
    if isinstance(call_args[-1], (str, os.PathLike)):
        return str(call_args[-1]).endswith("model.pth.tar-2")
    return call_number == 2


@pytest.mark.parametrize("target, failure", [
    ((torch, "save"), OSError(errno.ENOSPC, "No space left on device")),
    ((os, "replace"), OSError(errno.EROFS, "Read-only file system")),
], ids=["disk-full", "read-only"])
def test_full_or_read_only_disk_fails_clearly_and_leaves_no_partial_checkpoint(kit, tmp_path, monkeypatch,
                                                                               target, failure):
    opts = ("OPTIM.MAX_EPOCH", "2", "TRAIN.CHECKPOINT_FREQ", "1", "OPTIM.WARMUP_EPOCH", "0")
    straight = tmp_path / "straight"
    make_trainer(kit, straight, "CoOp", "vit_b16_ctxv1", *opts).train()

    out = tmp_path / "run"
    trainer = make_trainer(kit, out, "CoOp", "vit_b16_ctxv1", *opts)
    module, name = target
    real, calls = getattr(module, name), []

    def flaky(*call_args, **kwargs):  # epoch 1's checkpoint goes through, then the disk is full / read-only
        calls.append(call_args)
        if epoch_two_checkpoint(len(calls), call_args):
            raise failure
        return real(*call_args, **kwargs)

    monkeypatch.setattr(module, name, flaky)
    with pytest.raises(OSError, match=r'Could not write ".*model\.pth\.tar-2".*free disk space.*writable.*no partial'):
        trainer.train()
    monkeypatch.setattr(module, name, real)

    folder = out / "prompt_learner"
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint", "model.pth.tar-1"]  # no temp file either
    assert (folder / "checkpoint").read_text() == "model.pth.tar-1\n"
    torch.load(folder / "model.pth.tar-1", weights_only=True)  # complete

    make_trainer(kit, out, "CoOp", "vit_b16_ctxv1", *opts).train()  # space freed: the same run resumes
    want = torch.load(straight / "prompt_learner" / "model.pth.tar-2", weights_only=True)["state_dict"]
    got = torch.load(folder / "model.pth.tar-2", weights_only=True)["state_dict"]
    assert all(torch.equal(got[k], v) for k, v in want.items())
