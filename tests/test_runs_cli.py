"""runs/cli.py and runs/records.py: ``--load-epoch last`` where the training run records no config
(upstream folders, runs from before run.json): the newest complete, not resume-only, checkpoint."""
from __future__ import annotations

import argparse

import pytest
import torch

from dassl.engine.trainer import RESUME_ONLY_KEY
from runs.cli import build_parser
from runs.records import epoch_argument, last_epoch, resolve_load_epoch


def checkpoint(path, epoch: int, resume_only: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": epoch, "state_dict": {}, **({RESUME_ONLY_KEY: True} if resume_only else {})}, path)


def test_last_is_the_newest_epoch_every_model_saved_in_full(tmp_path):
    for epoch in (1, 2, 3):
        checkpoint(tmp_path / "prompt_learner" / f"model.pth.tar-{epoch}", epoch)
    checkpoint(tmp_path / "prompt_learner" / "model.pth.tar-4", 4, resume_only=True)  # only to resume a killed run
    checkpoint(tmp_path / "projector" / "model.pth.tar-2", 2)
    assert last_epoch(str(tmp_path)) == 2  # the one epoch both models have
    (tmp_path / "config.yaml").write_text("OPTIM:\n  MAX_EPOCH: 7\n")
    assert last_epoch(str(tmp_path)) == 7  # the run's recorded end wins: an unfinished run then fails to load


def test_without_a_run_the_error_names_the_files(tmp_path):
    checkpoint(tmp_path / "prompt_learner" / "model.pth.tar-1", 1, resume_only=True)
    with pytest.raises(FileNotFoundError, match=r"no training run .*prompt_learner/model\.pth\.tar-1"):
        last_epoch(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="needs --model-dir"):
        resolve_load_epoch("last", "")


def test_load_epoch_takes_a_number_or_last():
    assert build_parser().parse_args(["--load-epoch", "5"]).load_epoch == 5
    assert build_parser().parse_args(["--load-epoch", "last"]).load_epoch == "last"
    assert resolve_load_epoch(5, "") == 5 and resolve_load_epoch(None, "") is None
    with pytest.raises(argparse.ArgumentTypeError, match="a number or 'last'"):
        epoch_argument("final")
