"""Checkpoint I/O: atomic writes, weights-only loading (incl. upstream files), resume with RNG."""

from __future__ import annotations

import os
import pickle
import random
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from dassl.config import get_cfg_default
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import load_checkpoint, load_pretrained_weights, resume_from_checkpoint, save_checkpoint
from dassl.utils.torchtools import (
    DIGEST_KEY,
    CheckpointWriteError,
    DamagedCheckpointError,
    find_latest_checkpoint,
    get_rng_state,
    payload_digest,
    resume_candidates,
)
from numerics import assert_close


def make_training_state(max_epoch=6, warmup=1):
    """A tiny model with an SGD optimizer and a warmup+cosine scheduler, trained two epochs."""
    cfg = get_cfg_default().OPTIM
    cfg.NAME, cfg.LR, cfg.LR_SCHEDULER, cfg.MAX_EPOCH = "sgd", 0.01, "cosine", max_epoch
    cfg.WARMUP_EPOCH, cfg.WARMUP_TYPE = warmup, "constant"
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    optim = build_optimizer(model, cfg)
    sched = build_lr_scheduler(optim, cfg)
    for _ in range(2):
        loss = model(torch.randn(5, 3)).pow(2).mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
        sched.step()
    return cfg, model, optim, sched


def state_of(model, optim, sched, epoch=2, **extra):
    return {"state_dict": model.state_dict(), "epoch": epoch, "optimizer": optim.state_dict(),
            "scheduler": sched.state_dict(), "val_result": None, **extra}


# ----------------------------------------------------------------------------- saving
def test_save_checkpoint_layout_pointer_and_best(tmp_path, capsys):
    _, model, optim, sched = make_training_state()
    save_dir = tmp_path / "prompt_learner"
    state = state_of(model, optim, sched)
    state["state_dict"] = OrderedDict(("module." + k, v) for k, v in state["state_dict"].items())
    path = save_checkpoint(state, str(save_dir), is_best=True)

    assert path == str(save_dir / "model.pth.tar-2")
    assert sorted(os.listdir(save_dir)) == ["checkpoint", "model-best.pth.tar", "model.pth.tar-2"]
    assert (save_dir / "checkpoint").read_text() == "model.pth.tar-2\n"
    out = capsys.readouterr().out
    assert f"Checkpoint saved to {save_dir / 'model.pth.tar-2'}\n" in out
    assert f'Best checkpoint saved to "{save_dir / "model-best.pth.tar"}"' in out

    loaded = load_checkpoint(str(save_dir / "model-best.pth.tar"))
    assert list(loaded["state_dict"]) == list(model.state_dict())  # "module." stripped
    assert loaded["epoch"] == 2 and loaded["val_result"] is None

    save_checkpoint({"state_dict": model.state_dict(), "epoch": 3}, str(save_dir), model_name="model-best.pth.tar")
    assert (save_dir / "checkpoint").read_text() == "model-best.pth.tar\n"


def _partial_then_fail(obj, f, *args, **kwargs):
    f.write(b"PARTIAL CHECKPOINT BYTES")
    raise OSError(28, "No space left on device")


def test_failed_save_leaves_no_file_and_names_path(tmp_path, monkeypatch):
    _, model, optim, sched = make_training_state()
    save_dir = tmp_path / "model"
    monkeypatch.setattr(torch, "save", _partial_then_fail)
    with pytest.raises(CheckpointWriteError) as exc:
        save_checkpoint(state_of(model, optim, sched), str(save_dir))
    assert str(save_dir / "model.pth.tar-2") in str(exc.value) and "No space left" in str(exc.value)
    assert isinstance(exc.value, OSError)
    assert os.listdir(save_dir) == []  # neither the target, nor a temp file, nor a pointer


def test_failed_save_keeps_previous_checkpoint_intact(tmp_path, monkeypatch):
    _, model, optim, sched = make_training_state()
    save_dir = tmp_path / "model"
    save_checkpoint(state_of(model, optim, sched), str(save_dir))
    before = (save_dir / "model.pth.tar-2").read_bytes()
    monkeypatch.setattr(torch, "save", _partial_then_fail)
    with pytest.raises(CheckpointWriteError):
        save_checkpoint(state_of(model, optim, sched), str(save_dir))  # same name: overwrite attempt
    assert sorted(os.listdir(save_dir)) == ["checkpoint", "model.pth.tar-2"]
    assert (save_dir / "model.pth.tar-2").read_bytes() == before
    assert (save_dir / "checkpoint").read_text() == "model.pth.tar-2\n"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_gives_clear_error(tmp_path):
    save_dir = tmp_path / "ro"
    save_dir.mkdir()
    save_dir.chmod(0o500)
    try:
        with pytest.raises(CheckpointWriteError, match="ro/model.pth.tar-1"):
            save_checkpoint({"state_dict": {}, "epoch": 1}, str(save_dir))
    finally:
        save_dir.chmod(0o700)


# ----------------------------------------------------------------------------- loading
def test_load_checkpoint_argument_errors(tmp_path):
    with pytest.raises(ValueError):
        load_checkpoint(None)
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        load_checkpoint(str(tmp_path / "nothing.pth"))


class _Booby:
    """Unpickling this would run ``Path.touch`` (stand-in for arbitrary code)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_foreign_objects_are_refused_not_executed(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "payload": _Booby(marker)}, path)
    with pytest.raises(pickle.UnpicklingError, match="evil.pth"):
        load_checkpoint(str(path))
    assert not marker.exists()
    assert f'Unable to load checkpoint from "{path}"' in capsys.readouterr().out


def upstream_like_checkpoint(path, model, optim, sched):
    """What upstream Dassl writes: the warmup state holds the pickled successor scheduler object,
    and that object holds its optimizer (SGD with momentum buffers, a defaultdict state)."""
    upstream_sched_state = {k: v for k, v in sched.__dict__.items() if k != "optimizer"}
    upstream_sched_state["verbose"] = False
    assert isinstance(upstream_sched_state["successor"], torch.optim.lr_scheduler.CosineAnnealingLR)
    assert upstream_sched_state["successor"].optimizer.state  # momentum buffers present
    torch.save({"state_dict": model.state_dict(), "epoch": 2, "optimizer": optim.state_dict(),
                "scheduler": upstream_sched_state, "val_result": None}, path)


def test_upstream_checkpoint_loads_weights_only(tmp_path):
    cfg, model, optim, sched = make_training_state()
    path = tmp_path / "model.pth.tar-2"
    upstream_like_checkpoint(path, model, optim, sched)
    with pytest.raises(pickle.UnpicklingError):  # a plain weights-only load refuses it ...
        torch.load(path, weights_only=True)

    ckpt = load_checkpoint(str(path))  # ... ours retries with the exact classes allowed
    successor = ckpt["scheduler"]["successor"]
    assert isinstance(successor, torch.optim.lr_scheduler.CosineAnnealingLR)
    assert successor.last_epoch == sched.successor.last_epoch
    for k, v in model.state_dict().items():
        assert torch.equal(ckpt["state_dict"][k], v)

    # and it resumes into fresh objects; the successor keeps driving the *new* optimizer
    (tmp_path / "checkpoint").write_text("model.pth.tar-2\n")
    _, model2, optim2, sched2 = make_training_state()
    epoch = resume_from_checkpoint(str(tmp_path), model2, optim2, sched2)
    assert epoch == 2 and sched2.successor.optimizer is optim2
    for _ in range(3):
        optim.step(), sched.step()
        optim2.step(), sched2.step()
        assert_close(optim2.param_groups[0]["lr"], optim.param_groups[0]["lr"], what="lr after restore")


def test_checkpoints_we_write_need_no_allowlist(tmp_path):
    _, model, optim, sched = make_training_state()
    save_checkpoint(state_of(model, optim, sched, rng_state=get_rng_state()), str(tmp_path))
    loaded = torch.load(tmp_path / "model.pth.tar-2", weights_only=True)  # plain weights-only suffices
    assert loaded["epoch"] == 2 and loaded["scheduler"] == sched.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded["state_dict"][key], value), key


# ----------------------------------------------------------------------------- resume
def test_resume_restores_model_optimizer_scheduler_and_rng(tmp_path, capsys):
    _, model, optim, sched = make_training_state()
    save_checkpoint(state_of(model, optim, sched, rng_state=get_rng_state()), str(tmp_path))
    saved_weights = {k: v.clone() for k, v in model.state_dict().items()}
    expected_draws = (random.random(), np.random.rand(3).tolist(), torch.rand(3))
    expected_lrs = []
    for _ in range(3):
        optim.step(), sched.step()
        expected_lrs.append(optim.param_groups[0]["lr"])

    torch.manual_seed(1234), random.seed(99), np.random.seed(7)  # disturb everything
    _, model2, optim2, sched2 = make_training_state()
    epoch = resume_from_checkpoint(str(tmp_path), model2, optim2, sched2)

    assert epoch == 2
    assert (random.random(), np.random.rand(3).tolist()) == expected_draws[:2]
    assert torch.equal(torch.rand(3), expected_draws[2])
    for k, v in saved_weights.items():
        assert torch.equal(model2.state_dict()[k], v)
    saved_buffers = [s["momentum_buffer"] for s in torch.load(tmp_path / "model.pth.tar-2", weights_only=True)["optimizer"]["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip([s["momentum_buffer"] for s in optim2.state.values()], saved_buffers))
    lrs = []
    for _ in range(3):
        optim2.step(), sched2.step()
        lrs.append(optim2.param_groups[0]["lr"])
    assert_close(lrs, expected_lrs, what="lrs after resume")
    out = capsys.readouterr().out
    for line in ["Loading checkpoint from", "Loaded model weights", "Loaded optimizer", "Loaded scheduler",
                 "Loaded RNG states", "Previous epoch: 2"]:
        assert line in out


def test_resume_takes_the_newest_complete_file_whatever_the_pointer_says(tmp_path, capsys):
    assert find_latest_checkpoint(str(tmp_path / "missing")) is None
    assert find_latest_checkpoint(str(tmp_path)) is None
    for n in (2, 10, 4):
        torch.save({"epoch": n}, tmp_path / f"model.pth.tar-{n}")
    pointer = tmp_path / "checkpoint"
    assert find_latest_checkpoint(str(tmp_path)) == str(tmp_path / "model.pth.tar-10")
    # a kill between writing model.pth.tar-10 and updating the pointer
    pointer.write_text("model.pth.tar-4\n")
    assert resume_candidates(str(tmp_path)) == [str(tmp_path / f"model.pth.tar-{n}") for n in (10, 4, 2)]
    assert "Warning" not in capsys.readouterr().out

    for content, why in [(b"model.pth.tar-99\n", "it names 'model.pth.tar-99', which is not a file of that folder"),
                         (b"\xff\xfe\x00garbage\x9c", "which cannot be read (UnicodeDecodeError: 'utf-8' codec")]:
        pointer.write_bytes(content)
        assert find_latest_checkpoint(str(tmp_path)) == str(tmp_path / "model.pth.tar-10")
        out = capsys.readouterr().out
        assert f'Warning: Ignoring the checkpoint pointer "{pointer}"' in out and why in out

    # upstream's pointer may name model-best.pth.tar: it takes the place of its stored epoch
    pointer.write_text("model-best.pth.tar\n")
    torch.save({"epoch": 10}, tmp_path / "model-best.pth.tar")
    assert find_latest_checkpoint(str(tmp_path)) == str(tmp_path / "model-best.pth.tar")  # a tie: the pointer's
    torch.save({"epoch": 3}, tmp_path / "model-best.pth.tar")
    assert resume_candidates(str(tmp_path))[:3] == [str(tmp_path / n) for n in ("model.pth.tar-10", "model.pth.tar-4",
                                                                                 "model-best.pth.tar")]


def test_garbage_pointer_never_stops_a_resume(tmp_path, capsys):
    _, model, optim, sched = make_training_state()
    save_checkpoint(state_of(model, optim, sched, epoch=5), str(tmp_path))
    (tmp_path / "checkpoint").write_bytes(bytes(range(256)))
    assert resume_from_checkpoint(str(tmp_path), make_training_state()[1]) == 5
    assert f'Loading checkpoint from "{tmp_path / "model.pth.tar-5"}"' in capsys.readouterr().out


def test_load_pretrained_weights_keeps_matching_keys(tmp_path, capsys):
    src = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 5))
    dst = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    torch.save({"state_dict": OrderedDict(("module." + k, v) for k, v in src.state_dict().items())}, tmp_path / "w.pth")
    load_pretrained_weights(dst, str(tmp_path / "w.pth"))
    assert torch.equal(dst[0].weight, src[0].weight)
    out = capsys.readouterr().out
    assert f"Successfully loaded pretrained weights from {tmp_path / 'w.pth'}" in out
    assert "Layers discarded due to unmatched keys or size: ['1.weight', '1.bias']" in out

    torch.save({"other.weight": torch.zeros(1)}, tmp_path / "none.pth")
    with pytest.warns(UserWarning, match="none.pth"):
        load_pretrained_weights(dst, str(tmp_path / "none.pth"))


def test_unwritable_directory_error_without_permission_bits(tmp_path, monkeypatch):
    """Same as the read-only test, but simulated so it also runs as root."""
    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(CheckpointWriteError, match=r"model\.pth\.tar-1.*Permission denied"):
        save_checkpoint({"state_dict": {}, "epoch": 1}, str(tmp_path))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_checkpoints_get_plain_file_permissions_under_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        save_checkpoint({"state_dict": {}, "epoch": 1}, str(tmp_path), is_best=True)
    finally:
        os.umask(previous)
    for name in ("model.pth.tar-1", "checkpoint", "model-best.pth.tar"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


# ----------------------------------------------------------------------------- payload digest
MARKER = torch.arange(1000, 1064, dtype=torch.float32)  # bytes that occur once in a checkpoint


def zero_bytes_inside(path: Path, tensor: torch.Tensor, count: int = 16) -> None:
    """What silent corruption does: a block of ``tensor``'s data in the file at ``path`` (its bytes
    occur once there) becomes zeros; the file stays loadable."""
    data = bytearray(path.read_bytes())
    at = bytes(data).index(tensor.numpy().tobytes()) + tensor.numel() * tensor.element_size() // 2
    data[at:at + count] = bytes(count)
    path.write_bytes(bytes(data))


def test_zeroed_tensor_bytes_are_caught_by_the_digest(tmp_path, capsys):
    _, model, optim, sched = make_training_state()
    save_checkpoint(state_of(model, optim, sched, epoch=1, marker=MARKER), str(tmp_path))
    save_checkpoint(state_of(model, optim, sched, epoch=2, marker=MARKER), str(tmp_path))
    newest = tmp_path / "model.pth.tar-2"
    recorded = torch.load(newest, weights_only=True)
    assert recorded[DIGEST_KEY] == payload_digest(recorded) and recorded[DIGEST_KEY].startswith("sha256:")
    assert load_checkpoint(str(newest))["epoch"] == 2

    zero_bytes_inside(newest, MARKER)
    assert not torch.equal(torch.load(newest, weights_only=True)["marker"], MARKER)  # torch alone notices nothing
    with pytest.raises(DamagedCheckpointError, match=f'"{newest}" is damaged: its contents no longer match'):
        load_checkpoint(str(newest))
    capsys.readouterr()
    assert resume_from_checkpoint(str(tmp_path), make_training_state()[1]) == 1  # the resume falls back
    assert f'Warning: Skipping unreadable checkpoint "{newest}" (DamagedCheckpointError' in capsys.readouterr().out


def test_digest_covers_every_entry_and_files_without_one_load_unchecked(tmp_path):
    state = {"state_dict": {"w": torch.ones(3, dtype=torch.bfloat16)}, "epoch": 4, "optimizer": None,
             "scheduler": {"_last_lr": [0.1], "base_lrs": (0.1,)}}
    digest = payload_digest(state)
    assert payload_digest({**state, DIGEST_KEY: "sha256:old"}) == digest  # the digest entry is left out
    for changed in ({**state, "epoch": 5}, {**state, "scheduler": {"_last_lr": [0.10000001], "base_lrs": (0.1,)}},
                    {**state, "state_dict": {"w": torch.ones(3, dtype=torch.float16)}}):
        assert payload_digest(changed) != digest
    torch.save(state, tmp_path / "upstream.pth")  # upstream Dassl's layout: no digest
    assert load_checkpoint(str(tmp_path / "upstream.pth"))["epoch"] == 4
