"""Resume by default (engine level, toy trainer on disk): resume-only checkpoints of every epoch,
removed once superseded; any unreadable checkpoint is skipped; models resume from one epoch."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from dassl.engine import TRAINER_REGISTRY, TrainerBase
from dassl.engine.trainer import RESUME_ONLY_KEY, ResumePointSchedule
from dassl.utils import save_checkpoint
from dassl.utils.torchtools import DamagedCheckpointError
from numerics import assert_close
from test_engine_checkpoint import zero_bytes_inside
from test_engine_trainer import CrashAtEpoch, EngineToyTrainer, make_cfg, toy_root  # noqa: F401 (fixture)
from test_engine_trainer import build as build_toy


def build(cfg):
    """The toy trainer, saving a resume point after every epoch: its epochs last a few tens of ms,
    as long as a save on a busy disk, so the default schedule could skip some."""
    trainer = build_toy(cfg)
    trainer.resume_schedule = ResumePointSchedule(max_overhead=None)
    return trainer


def files(folder: Path) -> list:
    return sorted(os.listdir(folder))


def assert_same_weights(got_path: Path, want_path: Path) -> None:
    got, want = (torch.load(p, weights_only=True)["state_dict"] for p in (got_path, want_path))
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert torch.equal(got[key], value), key


@pytest.mark.slow
def test_crashed_run_resumes_without_checkpoint_freq(toy_root, tmp_path, capsys):
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    build(make_cfg(toy_root, straight)).train()
    assert files(straight / "model") == ["checkpoint", "model.pth.tar-3"]  # upstream's final layout

    with pytest.raises(CrashAtEpoch):  # dies as epoch index 2 starts; CHECKPOINT_FREQ is the default 0
        build(make_cfg(toy_root, crashed, trainer="EngineCrashingTrainer")).train()
    # epoch 1's resume point was deleted once epoch 2's was complete
    assert files(crashed / "model") == ["checkpoint", "model.pth.tar-2"]
    assert torch.load(crashed / "model" / "model.pth.tar-2", weights_only=True)[RESUME_ONLY_KEY] is True
    # as if the kill had come between writing epoch 2's file and deleting epoch 1's
    shutil.copy(crashed / "model" / "model.pth.tar-2", crashed / "model" / "model.pth.tar-1")
    capsys.readouterr()

    torch.manual_seed(12345)  # a fresh process would start from a different RNG state
    build(make_cfg(toy_root, crashed)).train()
    out = capsys.readouterr().out
    assert "Previous epoch: 2" in out and "epoch [3/3]" in out and "epoch [2/3]" not in out
    assert files(crashed / "model") == ["checkpoint", "model.pth.tar-3"]  # the resume points are gone
    assert RESUME_ONLY_KEY not in torch.load(crashed / "model" / "model.pth.tar-3", weights_only=True)
    assert_same_weights(crashed / "model" / "model.pth.tar-3", straight / "model" / "model.pth.tar-3")


@pytest.mark.slow
def test_finished_runs_keep_exactly_upstreams_files(toy_root, tmp_path):
    build(make_cfg(toy_root, tmp_path / "freq", "TRAIN.CHECKPOINT_FREQ", "2", "OPTIM.MAX_EPOCH", "5")).train()
    assert files(tmp_path / "freq" / "model") == ["checkpoint", "model.pth.tar-2", "model.pth.tar-4", "model.pth.tar-5"]
    build(make_cfg(toy_root, tmp_path / "best", "TEST.FINAL_MODEL", "best_val")).train()
    assert files(tmp_path / "best" / "model") == ["checkpoint", "model-best.pth.tar", "model.pth.tar-3"]


@pytest.mark.slow
def test_resume_from_another_folder_leaves_that_folder_alone(toy_root, tmp_path):
    crashed = tmp_path / "crashed"
    with pytest.raises(CrashAtEpoch):
        build(make_cfg(toy_root, crashed, trainer="EngineCrashingTrainer")).train()
    build(make_cfg(toy_root, tmp_path / "elsewhere", "RESUME", str(crashed))).train()
    assert files(crashed / "model") == ["checkpoint", "model.pth.tar-2"]
    assert files(tmp_path / "elsewhere" / "model") == ["checkpoint", "model.pth.tar-3"]


def test_schedule_saves_every_epoch_when_cheap_and_bounds_the_overhead_when_costly():
    schedule = ResumePointSchedule(max_overhead=0.1)
    assert schedule.due(now=0.0)  # nothing measured yet
    schedule.record(start=10.0, end=10.05)  # 50 ms save
    assert not schedule.due(now=10.4) and schedule.due(now=10.6)  # due after 0.5 s of training
    schedule.record(start=20.0, end=23.0)  # a 3 s save (a whole ViT-B/16 model)
    assert not schedule.due(now=52.9) and schedule.due(now=53.0)  # at most 10 % of the time saving
    assert ResumePointSchedule(max_overhead=None).due(now=0.0)


def test_truncated_newest_checkpoint_never_stops_a_resume(toy_root, tmp_path, capsys):
    """30 cut points over a real checkpoint: torch fails with RuntimeError, OSError, ... depending
    on the cut; each resumes from the previous epoch, or (none left) trains from scratch."""
    trainer = build(make_cfg(toy_root, tmp_path, "TRAIN.CHECKPOINT_FREQ", "1", "OPTIM.MAX_EPOCH", "2"))
    trainer.train()
    newest = tmp_path / "model" / "model.pth.tar-2"
    intact = newest.read_bytes()
    cuts = sorted({len(intact) * i // 30 for i in range(30)})
    assert len(cuts) == 30

    def resume_with_cut(cut: int):
        newest.write_bytes(intact[:cut])
        capsys.readouterr()
        epoch = trainer.resume_model_if_exist(str(tmp_path))
        return epoch, [line[len("Warning: "):] for line in capsys.readouterr().out.splitlines()
                       if line.startswith("Warning: ")]

    errors = set()
    for cut in cuts:
        epoch, messages = resume_with_cut(cut)
        assert epoch == 1, cut
        assert len(messages) == 1 and "Skipping unreadable checkpoint" in messages[0] and str(newest) in messages[0]
        errors.add(messages[0].split("(", 1)[1].split(":", 1)[0])
    assert "OSError" in errors, errors  # the error the issue saw crash a resume (Errno 22)

    (tmp_path / "model" / "model.pth.tar-1").unlink()
    for cut in cuts:
        epoch, messages = resume_with_cut(cut)
        assert epoch == 0, cut
        assert "training from scratch" in messages[-1]


class TwoModelTrainer(TrainerBase):
    def __init__(self):
        super().__init__()
        for name in ("first", "second"):
            model = nn.Linear(2, 2)
            self.register_model(name, model, torch.optim.SGD(model.parameters(), lr=0.1))


def test_kill_between_the_files_of_one_epoch_resumes_all_models_from_the_previous_epoch(tmp_path, capsys):
    trainer = TwoModelTrainer()
    trainer.save_epoch_checkpoint(0, str(tmp_path), resume_only=True)
    trainer.save_epoch_checkpoint(1, str(tmp_path), resume_only=True)
    assert files(tmp_path / "first") == files(tmp_path / "second") == ["checkpoint", "model.pth.tar-2"]
    # epoch 3: the first model's file is written, then the run is killed before the second's
    save_checkpoint({"state_dict": trainer._models["first"].state_dict(), "epoch": 3}, str(tmp_path / "first"))

    assert TwoModelTrainer().resume_model_if_exist(str(tmp_path)) == 2
    assert f"Using {tmp_path / 'first' / 'model.pth.tar-2'} so that every model resumes from epoch 2" in capsys.readouterr().out


def test_temp_file_of_a_killed_save_is_removed_only_by_the_folder_holder(toy_root, tmp_path, capsys):
    from dassl.utils.output_lock import lock_output_dir, release_output_dir

    leftover = tmp_path / "model" / ".model.pth.tar-1.k2j4.tmp"
    leftover.parent.mkdir()
    leftover.write_bytes(b"half a checkpoint")
    build(make_cfg(toy_root, tmp_path, "OPTIM.MAX_EPOCH", "1", "TEST.NO_TEST", "True")).train()
    assert leftover.exists()  # another process might be writing it

    lock_output_dir(str(tmp_path))
    try:
        build(make_cfg(toy_root, tmp_path, "OPTIM.MAX_EPOCH", "1", "TEST.NO_TEST", "True")).train()
    finally:
        release_output_dir(str(tmp_path))
    assert not leftover.exists() and f"Removed {leftover} (left by a run killed while saving)" in capsys.readouterr().out


@TRAINER_REGISTRY.register(force=True)
class EngineCrashingLaterTrainer(EngineToyTrainer):
    """Dies at the start of epoch index 3."""

    def before_epoch(self):
        if self.epoch == 3:
            raise CrashAtEpoch


class NeverDue(ResumePointSchedule):
    """Resume points spaced out further than the run lasts (a costly save): a resumed run writes
    none, so it never overwrites the files a kill left behind."""

    def due(self, now=None):
        return False


def crash(toy_root, folder: Path, trainer: str, *opts: str) -> None:
    with pytest.raises(CrashAtEpoch):
        build(make_cfg(toy_root, folder, *opts, trainer=trainer)).train()


def resume_without_resume_points(toy_root, folder: Path, *opts: str):
    trainer = build_toy(make_cfg(toy_root, folder, *opts))
    trainer.resume_schedule = NeverDue()
    trainer.train()
    return trainer


@pytest.mark.slow
def test_kill_before_the_pointer_update_resumes_from_the_newest_complete_file(toy_root, tmp_path, capsys):
    opts = ("OPTIM.MAX_EPOCH", "5")
    straight, run, later = tmp_path / "straight", tmp_path / "run", tmp_path / "later"
    build(make_cfg(toy_root, straight, *opts)).train()
    crash(toy_root, run, "EngineCrashingTrainer", *opts)
    crash(toy_root, later, "EngineCrashingLaterTrainer", *opts)
    # the kill came after model.pth.tar-3 was complete, before the pointer (still -2) was updated
    shutil.copy(later / "model" / "model.pth.tar-3", run / "model")
    assert files(run / "model") == ["checkpoint", "model.pth.tar-2", "model.pth.tar-3"]
    assert (run / "model" / "checkpoint").read_text() == "model.pth.tar-2\n"
    capsys.readouterr()

    resume_without_resume_points(toy_root, run, *opts)
    out = capsys.readouterr().out
    assert "Previous epoch: 3" in out and "epoch [4/5]" in out and "epoch [3/5]" not in out
    assert files(run / "model") == ["checkpoint", "model.pth.tar-5"]  # no stray -3 beside -5
    assert_same_weights(run / "model" / "model.pth.tar-5", straight / "model" / "model.pth.tar-5")


@pytest.mark.slow
def test_finished_run_removes_resume_points_it_never_loaded_and_evaluation_checks_the_digest(toy_root, tmp_path, capsys):
    opts = ("OPTIM.MAX_EPOCH", "5")
    run, later = tmp_path / "run", tmp_path / "later"
    crash(toy_root, run, "EngineCrashingTrainer", *opts)
    crash(toy_root, later, "EngineCrashingLaterTrainer", *opts)
    damaged = run / "model" / "model.pth.tar-3"
    shutil.copy(later / "model" / "model.pth.tar-3", damaged)
    zero_bytes_inside(damaged, torch.load(damaged, weights_only=True)["state_dict"]["classifier.weight"], count=8)
    capsys.readouterr()

    trainer = resume_without_resume_points(toy_root, run, *opts)
    out = capsys.readouterr().out
    assert f'Warning: Skipping unreadable checkpoint "{damaged}" (DamagedCheckpointError' in out
    assert "Previous epoch: 2" in out
    assert files(run / "model") == ["checkpoint", "model.pth.tar-5"]

    final = run / "model" / "model.pth.tar-5"
    zero_bytes_inside(final, torch.load(final, weights_only=True)["state_dict"]["classifier.weight"], count=8)
    with pytest.raises(DamagedCheckpointError, match=str(final)):
        trainer.load_model(str(run), epoch=5)


def tensorboard_events(folder: Path) -> list:
    """``(file index, event)`` of every event of the run's TensorBoard files, oldest file first."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    paths = sorted(folder.glob("events.out.tfevents.*"), key=lambda p: (p.stat().st_mtime_ns, p.name))
    return [(index, event) for index, path in enumerate(paths) for event in EventFileLoader(str(path)).Load()]


@pytest.mark.slow
def test_resumed_run_continues_the_tensorboard_curves_at_its_first_step(toy_root, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.compat.proto.event_pb2 import SessionLog

    opts = ("TRAIN.CHECKPOINT_FREQ", "1")
    straight, run = tmp_path / "straight", tmp_path / "run"
    build(make_cfg(toy_root, straight, *opts)).train()
    crash(toy_root, run, "EngineCrashingTrainer", *opts)  # logged epochs 1 and 2 (steps 0-7)
    (run / "model" / "model.pth.tar-2").unlink()  # so the resume repeats epoch 2: steps 4-7 again
    build(make_cfg(toy_root, run, *opts)).train()

    starts = [(index, event.step) for index, event in tensorboard_events(run / "tensorboard")
              if event.HasField("session_log") and event.session_log.status == SessionLog.START]
    assert starts[-1] == (1, 4)  # the resumed run's file hides what the killed one logged from step 4 on
    curves = []
    for folder in (straight, run):
        accumulator = EventAccumulator(str(folder / "tensorboard"))
        accumulator.Reload()
        curves.append([(event.step, event.value) for event in accumulator.Scalars("train/loss")])
    assert [step for step, _ in curves[1]] == list(range(12))
    assert_close([value for _, value in curves[1]], [value for _, value in curves[0]], what="train/loss curve")
