"""Crash-safe checkpoints, exact resume, and safe (weights-only) loading, through train.py.

* A GOPro run with its shipped config (the kit's options only; no CHECKPOINT_FREQ) killed with
  SIGKILL at a random logged iteration, then resumed (once with ``--resume DIR`` into a new
  folder, once by re-running the same command), ends bitwise equal to an uninterrupted run:
  weights, optimizer, scheduler, accuracy. NUM_WORKERS 0 on the CPU.
* A damaged newest checkpoint (or a temp file left by a kill during a write) does not stop a
  resume: the newest readable checkpoint is used, or, when none can be read, training starts
  from scratch with a warning.
* A seed gives the same run whether or not its few-shot split was already cached, also with a
  transform that draws from Python's ``random``.
* Every ``torch.load`` in the code is weights-only and nothing unpickles files; an upstream
  Dassl checkpoint (pickled scheduler + optimizer) still evaluates with ``--eval-only --model-dir``.
"""
from __future__ import annotations

import ast
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, accuracies, make_trainer, run_train
from dassl.utils import load_checkpoint

DATASET_CFG = str(REPO / "configs/datasets/oxford_pets.yaml")
CODE_DIRS = ("dassl", "datasets", "trainers", "tools", "bench")


def gopro_args(kit, out: Path, *flags: str, root=None, seed: int = 1, shots: int = 8, epochs: int = 3,
               opts: tuple = ()) -> list:
    return ["--root", str(root or kit.data), "--seed", str(seed), "--trainer", "GOPro", "--dataset-config-file",
            DATASET_CFG, "--config-file", str(REPO / "configs/trainers/GOPro/vit_b16.yaml"), "--output-dir", str(out),
            *flags, *kit.opts(), "DATASET.NUM_SHOTS", str(shots), "OPTIM.MAX_EPOCH", str(epochs), *opts]


def start_and_kill_when_logged(args: list, log: Path, line: str, timeout: float = 300) -> None:
    """Start train.py and SIGKILL it as soon as its ``log.txt`` holds ``line``; reap it.

    Also checks that the log is written while the run goes on, not when it ends.
    """
    proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while not (log.exists() and line in log.read_text()):
            assert proc.poll() is None, f"train.py ended before its log.txt showed {line!r}"
            assert time.monotonic() < deadline, f"log.txt did not show {line!r} within the timeout"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()


def files(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir())


def assert_same_checkpoint(got_path: Path, want_path: Path) -> None:
    got, want = (torch.load(p, weights_only=True) for p in (got_path, want_path))
    assert got["epoch"] == want["epoch"]
    assert got["state_dict"].keys() == want["state_dict"].keys()
    for key, value in want["state_dict"].items():
        assert torch.equal(got["state_dict"][key], value), key
    for (_, g), (_, w) in zip(sorted(got["optimizer"]["state"].items()), sorted(want["optimizer"]["state"].items())):
        assert torch.equal(g["momentum_buffer"], w["momentum_buffer"])
    assert got["scheduler"]["_last_lr"] == want["scheduler"]["_last_lr"]


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_bitwise_result_of_an_uninterrupted_run(kit, tmp_path):
    straight, killed, elsewhere = tmp_path / "straight", tmp_path / "killed", tmp_path / "elsewhere"
    run_train(*gopro_args(kit, straight))  # 8 shots x 5 classes / batch 4: 10 steps per epoch
    final = Path("gopro") / "model.pth.tar-3"
    assert files(straight / "gopro") == ["checkpoint", final.name]  # upstream's layout

    # a random iteration after epoch 1 (progress lines come every 5 steps with the kit's options)
    epoch, step = random.choice([(2, 5), (2, 10), (3, 5)])
    start_and_kill_when_logged(gopro_args(kit, killed), killed / "log.txt", f"epoch [{epoch}/3] batch [{step}/10]")
    assert not (killed / final).exists() and "Finish training" not in (killed / "log.txt").read_text()
    resume_points = [p.name for p in (killed / "gopro").glob("model.pth.tar-*")]
    assert len(resume_points) == 1, resume_points  # each superseded one was deleted
    done = int(resume_points[0].rsplit("-", 1)[1])
    assert done in (epoch - 1, epoch), (epoch, step, done)

    # 1) --resume DIR: continue the killed run's state into a new output folder
    run_train(*gopro_args(kit, elsewhere, "--resume", str(killed)))
    log = (elsewhere / "log.txt").read_text()
    assert f"Previous epoch: {done}" in log and "Loaded RNG states" in log
    assert f"epoch [{done}/3]" not in log and f"epoch [{done + 1}/3]" in log
    assert_same_checkpoint(elsewhere / final, straight / final)

    # 2) the same command again: resumes in place; the killed run's log is kept as log.txt-<time>
    run_train(*gopro_args(kit, killed))
    log = (killed / "log.txt").read_text()
    assert f"Found checkpoint at {killed} (will resume training)" in log
    rotated = [p for p in killed.iterdir() if p.name.startswith("log.txt-")]
    assert len(rotated) == 1 and "Finish training" not in rotated[0].read_text()
    assert_same_checkpoint(killed / final, straight / final)
    assert accuracies(log) == accuracies((straight / "log.txt").read_text())
    assert files(killed / "gopro") == ["checkpoint", final.name]  # no resume point, no temp file left
    assert not (killed / ".lock").exists()  # released at exit


def test_resume_uses_the_newest_readable_checkpoint(kit, tmp_path, capsys):
    opts = ("OPTIM.MAX_EPOCH", "3", "TRAIN.CHECKPOINT_FREQ", "1", "OPTIM.WARMUP_EPOCH", "0", "OPTIM.LR", "0.05")
    make_trainer(kit, tmp_path / "straight", "CoOp", "vit_b16_ctxv1", *opts).train()
    run = tmp_path / "damaged"
    make_trainer(kit, run, "CoOp", "vit_b16_ctxv1", *opts).train()
    folder = run / "prompt_learner"
    (folder / "model.pth.tar-3").unlink()
    # epoch 2's file got truncated by something else, and a kill during a write left a temp file
    (folder / "model.pth.tar-2").write_bytes((folder / "model.pth.tar-2").read_bytes()[:1000])
    (folder / ".model.pth.tar-3.k2j4.tmp").write_bytes(b"half a checkpoint")
    (folder / "checkpoint").write_text("model.pth.tar-2\n")
    capsys.readouterr()

    make_trainer(kit, run, "CoOp", "vit_b16_ctxv1", *opts).train()
    out = capsys.readouterr().out
    assert f'Warning: Skipping unreadable checkpoint "{folder / "model.pth.tar-2"}"' in out
    assert "Previous epoch: 1" in out and "epoch [2/3]" in out
    final = Path("prompt_learner") / "model.pth.tar-3"
    assert_same_checkpoint(run / final, tmp_path / "straight" / final)


def test_training_starts_from_scratch_when_no_checkpoint_can_be_read(kit, tmp_path, capsys):
    folder = tmp_path / "prompt_learner"
    folder.mkdir(parents=True)
    (folder / "model.pth.tar-1").write_bytes(b"")
    (folder / "checkpoint").write_text("model.pth.tar-1\n")
    trainer = make_trainer(kit, tmp_path, "CoOp", "vit_b16_ctxv1", "OPTIM.MAX_EPOCH", "1")
    trainer.train()
    out = capsys.readouterr().out
    assert (f'Warning: Skipping unreadable checkpoint "{folder / "model.pth.tar-1"}" (EOFError); trying an older one\n'
            f"Warning: No checkpoint in {tmp_path} could be read (see the warnings above); training from scratch\n") in out
    assert trainer.start_epoch == 0 and "epoch [1/1]" in out
    assert load_checkpoint(str(folder / "model.pth.tar-1"))["epoch"] == 1  # the damaged file was replaced


# --------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------
def fresh_copy(data: Path, target: Path) -> Path:
    """A copy of the kit's datasets without few-shot caches (a run has to draw its split)."""
    shutil.copytree(data, target, ignore=shutil.ignore_patterns("split_fewshot"))
    return target


def few_shot_split(kit, root: Path, seed: int, shots: int) -> dict:
    """The few-shot train/val image paths (relative to ``root``) train.py uses for ``seed``."""
    from runs import cli
    from dassl.data.datasets import build_dataset
    from dassl.utils import set_random_seed

    cfg = cli.setup_cfg(cli.build_parser().parse_args(gopro_args(kit, root / "unused", root=root, seed=seed,
                                                                         shots=shots)))
    set_random_seed(cfg.SEED)
    dataset = build_dataset(cfg)
    return {split: [str(Path(item.impath).relative_to(root)) for item in getattr(dataset, split)]
            for split in ("train_x", "val")}


@pytest.mark.slow
def test_same_seed_gives_the_same_few_shot_split_and_the_same_result(kit, tmp_path):
    data = fresh_copy(kit.data, tmp_path / "DATA")
    runs = [tmp_path / "first", tmp_path / "second"]
    # random_translation draws from Python's random, which drawing the split also uses
    transforms = ("INPUT.TRANSFORMS", "['random_translation', 'random_flip', 'normalize']")
    for out in runs:  # the first run draws and caches the split, the second loads it
        run_train(*gopro_args(kit, out, root=data, shots=4, epochs=2, opts=transforms))
    logs = [(out / "log.txt").read_text() for out in runs]
    assert "Saving preprocessed few-shot data" in logs[0] and "Loading preprocessed few-shot data" in logs[1]
    assert accuracies(logs[0]) == accuracies(logs[1])
    final = Path("gopro") / "model.pth.tar-2"
    assert_same_checkpoint(runs[1] / final, runs[0] / final)

    other = fresh_copy(kit.data, tmp_path / "OTHER")
    drawn = few_shot_split(kit, other, seed=1, shots=4)
    assert drawn == few_shot_split(kit, data, seed=1, shots=4)  # drawn afresh == what the runs cached
    assert drawn != few_shot_split(kit, other, seed=2, shots=4)


# --------------------------------------------------------------------------------------------
# Safe loading
# --------------------------------------------------------------------------------------------
def python_files():
    yield REPO / "train.py"
    for folder in CODE_DIRS:
        yield from (REPO / folder).rglob("*.py")


def calls(tree: ast.AST, owner: str, name: str):
    """Every ``owner.name(...)`` call in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == name:
            if isinstance(node.func.value, ast.Name) and node.func.value.id == owner:
                yield node


def keyword(call: ast.Call, name: str):
    value = next((k.value for k in call.keywords if k.arg == name), None)
    return value.value if isinstance(value, ast.Constant) else value


def test_every_torch_load_is_weights_only_and_nothing_unpickles_files():
    found = 0
    for path in python_files():
        tree = ast.parse(path.read_text(), str(path))
        for call in calls(tree, "torch", "load"):
            assert keyword(call, "weights_only") is True, f"{path}:{call.lineno}: torch.load without weights_only=True"
            found += 1
        for owner, name in (("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("dill", "load")):
            assert not list(calls(tree, owner, name)), f"{path} calls {owner}.{name}"
        for call in calls(tree, "np", "load"):
            assert keyword(call, "allow_pickle") in (None, False), f"{path}:{call.lineno}: np.load(allow_pickle=True)"
    assert found >= 3  # the checkpoint loader (twice) and the CLIP loader at least


def upstream_coop_checkpoint(trainer, path: Path, ctx: torch.Tensor) -> None:
    """A CoOp checkpoint as upstream Dassl writes it: plain ``torch.save`` of the state, whose warmup
    scheduler entry holds the successor scheduler *object* and, through it, the SGD optimizer."""
    trainer.model.learnable.ctx.data.copy_(ctx)
    trainer.model.learnable.ctx.grad = torch.ones_like(ctx)
    trainer.optim.step()  # momentum buffers: a defaultdict in the pickled optimizer
    trainer.sched.step()
    sched_state = {k: v for k, v in trainer.sched.__dict__.items() if k != "optimizer"}
    sched_state["verbose"] = False
    assert isinstance(sched_state["successor"], torch.optim.lr_scheduler.LRScheduler)
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": trainer.model.learnable.state_dict(), "epoch": 5,
                "optimizer": trainer.optim.state_dict(), "scheduler": sched_state, "val_result": None}, path)


@pytest.mark.slow
def test_upstream_dassl_checkpoint_evaluates_through_eval_only(kit, tmp_path):
    import pickle

    trained = make_trainer(kit, tmp_path / "trained", "CoOp", "vit_b16_ctxv1", "OPTIM.MAX_EPOCH", "2",
                           "OPTIM.LR", "0.05", "OPTIM.WARMUP_EPOCH", "0")
    initial_accuracy = trained.test()
    trained.train()
    expected = trained.test()
    assert expected != initial_accuracy  # so the accuracy below shows that the context was loaded
    path = tmp_path / "upstream" / "prompt_learner" / "model.pth.tar-5"
    writer = make_trainer(kit, tmp_path / "writer", "CoOp", "vit_b16_ctxv1")
    upstream_coop_checkpoint(writer, path, trained.model.learnable.ctx.detach())
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # not loadable without the allow-list

    out = tmp_path / "eval"
    run_train("--root", str(kit.data), "--seed", "1", "--trainer", "CoOp", "--dataset-config-file", DATASET_CFG,
              "--config-file", str(REPO / "configs/trainers/CoOp/vit_b16_ctxv1.yaml"), "--output-dir", str(out),
              "--eval-only", "--model-dir", str(tmp_path / "upstream"), "--load-epoch", "5", *kit.opts())
    log = (out / "log.txt").read_text()
    assert f"Load {path} to prompt_learner (epoch=5)" in log
    assert accuracies(log) == [float(f"{expected:.1f}")]
