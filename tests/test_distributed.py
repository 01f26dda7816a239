"""Multi-process data parallelism (torchrun, CPU + gloo) for every trainer.

Two kinds of evidence:

* **One step, exactly.** In two spawned gloo processes every trainer takes one training step on
  its half of a fixed global batch (the augmented views are computed once, in the parent, so no
  augmentation randomness is involved); the averaged gradients, BatchNorm statistics and the test
  accuracy must equal a single process stepping on the whole batch. This is where GOPro's
  contrastive loss must see the negatives (and BatchNorm statistics) of both ranks.
* **The real entry point.** ``python -m torch.distributed.run --nproc_per_node=N train.py ...``:
  CoOp with a deterministic training configuration (no random crop/flip, ``SequentialSampler``)
  ends with the weights and accuracy of one process; GOPro with its normal random augmentation is
  compared within a tolerance (different ranks draw different augmentations, so exact numbers
  cannot match); zero-shot CLIP on 3 ranks (uneven shards) counts every test image exactly once.
  Only rank 0 writes log.txt, checkpoints and tensorboard files.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import torch

from conftest import REPO, accuracies, make_trainer
from numerics import assert_accuracy_close, assert_close
from test_baselines import METHODS as BASELINES

DATASET_CFG = str(REPO / "configs/datasets/oxford_pets.yaml")
TEST_SIZE = 50  # the kit's oxford_pets test split
GLOBAL_BATCH = 4
# A gradient is a sum over the batch whose terms can be much larger than the sum; 2 ranks add them in
# another order, so the rounding is relative to the terms (measured: up to 107 eps x the largest
# gradient, StyLIP's content.weight). Weights after 15 steps carry each step's rounding (measured:
# 31 eps x max |ctx|). Both stay far below a real bug: an un-averaged gradient is off by 50%.
GRADIENT_ULPS = 1024
TRAINING_ULPS = 1024
# Every trainer that learns: (paper config, options that fit the tiny kit).
TRAINABLE = {"CoOp": ("vit_b16_ctxv1", []), "GOPro": ("vit_b16", []), **BASELINES}


def method_config(name: str) -> str:
    config = TRAINABLE[name][0] if name in TRAINABLE else "vit_b16_ctxv1"
    folder = "CoOp" if name == "ZeroshotCLIP" else name
    return str(REPO / "configs" / "trainers" / folder / f"{config}.yaml")


def build(kit, out: Path, name: str, *opts: str):
    config, kit_opts = TRAINABLE[name]
    return make_trainer(kit, out, name, config, *kit_opts, "DATALOADER.TRAIN_X.BATCH_SIZE", str(GLOBAL_BATCH), *opts)


# --------------------------------------------------------------------------------------------
# One step in 2 gloo processes == one step in 1 process
# --------------------------------------------------------------------------------------------
def step_and_test(trainer, batch: Dict[str, torch.Tensor]) -> Dict[str, object]:
    """One training step on ``batch``; the learnable gradients, buffers and the test accuracy."""
    trainer.set_model_mode("train")
    trainer.epoch, trainer.batch_idx, trainer.num_batches = 0, 0, 2  # not the last batch: no lr step
    trainer.forward_backward(batch)
    module = trainer._models[trainer.get_model_names()[0]]
    grads = {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}
    buffers = {n: b.detach().clone() for n, b in module.named_buffers() if b.is_floating_point()}
    accuracy = trainer.test()
    return {"grads": grads, "buffers": buffers, "accuracy": accuracy, "total": trainer.evaluator._total}


def rank_rows(batch: Dict[str, torch.Tensor], rank: int, world: int) -> Dict[str, torch.Tensor]:
    per_rank = GLOBAL_BATCH // world
    return {k: v[rank * per_rank:(rank + 1) * per_rank] for k, v in batch.items()}


def epoch_probes(trainer) -> List[float]:
    """A random draw at every step of epoch 0: it depends on all augmentation drawn before it."""
    probes: List[float] = []
    trainer.forward_backward = lambda batch: probes.append(torch.rand(1).item()) or {"loss": 0.0}
    trainer.epoch = 0
    trainer.run_epoch()
    return probes


def _rank_worker(rank: int, world: int, kit_root: str, workdir: str, names: List[str]) -> None:
    """A spawned rank: build each trainer (now distributed), load the parent's initial weights,
    step on this rank's rows of the global batch and save what it got; then record the random
    draws of epoch 0 twice (the second time after scrambling the RNG)."""
    import torch.distributed as dist

    from tools.kit.build import Kit

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{workdir}/store", rank=rank, world_size=world)
    try:
        kit = Kit(Path(kit_root))
        for name in names:
            case = Path(workdir) / name
            inputs = torch.load(case / "inputs.pt", weights_only=True)
            trainer = build(kit, case / f"rank{rank}", name)
            trainer._models[trainer.get_model_names()[0]].load_state_dict(inputs["initial"])
            torch.save(step_and_test(trainer, rank_rows(inputs["batch"], rank, world)), case / f"rank{rank}.pt")

        trainer = build(kit, Path(workdir) / "probes" / f"rank{rank}", "CoOp")
        first = epoch_probes(trainer)
        torch.manual_seed(1000 + rank)
        torch.save({"first": first, "again": epoch_probes(trainer)}, Path(workdir) / "probes" / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(kit, tmp_path_factory):
    """Single-process references, then the same work on 2 spawned gloo ranks: (expected, workdir)."""
    import torch.multiprocessing as mp

    workdir = tmp_path_factory.mktemp("two_ranks")
    names = list(TRAINABLE)
    expected = {}
    for name in names:
        (workdir / name).mkdir()
        trainer = build(kit, workdir / name / "single", name)
        batch = {k: v for k, v in next(iter(trainer.train_loader_x)).items() if isinstance(v, torch.Tensor)}
        module = trainer._models[trainer.get_model_names()[0]]
        torch.save({"batch": batch, "initial": module.state_dict()}, workdir / name / "inputs.pt")
        expected[name] = step_and_test(trainer, batch)
    (workdir / "probes").mkdir()
    mp.spawn(_rank_worker, args=(2, str(kit.root), str(workdir), names), nprocs=2, join=True)
    return expected, workdir


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TRAINABLE))
def test_one_step_on_two_ranks_equals_one_step_on_the_global_batch(two_ranks, name):
    expected, workdir = two_ranks
    want = expected[name]
    # tolerance relative to the largest gradient (a bias before BatchNorm has a ~0 gradient: noise)
    scale = max(g.abs().max().item() for g in want["grads"].values())
    assert scale > 0
    for rank in (0, 1):
        got = torch.load(workdir / name / f"rank{rank}.pt", weights_only=True)
        assert got["total"] == TEST_SIZE, rank
        assert_accuracy_close(got["accuracy"], want["accuracy"], total=TEST_SIZE, what=f"rank {rank} accuracy")
        assert got["grads"].keys() == want["grads"].keys()
        for key, grad in want["grads"].items():
            assert_close(got["grads"][key], grad, what=f"rank {rank} gradient of {key}", scale=scale,
                         ulps=GRADIENT_ULPS)
        for key, buffer in want["buffers"].items():  # e.g. BatchNorm statistics of the global batch
            assert_close(got["buffers"][key], buffer, what=f"rank {rank} buffer {key}")


@pytest.mark.slow
def test_ranks_draw_their_own_augmentations_as_a_function_of_seed_epoch_and_rank(two_ranks):
    _, workdir = two_ranks
    rank0, rank1 = (torch.load(workdir / "probes" / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert len(rank0["first"]) == len(rank1["first"]) == 20  # 80 images in global batches of 4 (2 per rank)
    assert rank0["first"] != rank1["first"]  # both ranks ran set_random_seed(SEED), yet their streams differ
    assert rank0["again"] == rank0["first"] and rank1["again"] == rank1["first"]  # what an exact resume needs


# --------------------------------------------------------------------------------------------
# The real entry point under torchrun
# --------------------------------------------------------------------------------------------
def torchrun(nproc: int, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone --nproc_per_node=N train.py ...`` on the CPU
    (gloo); ``--standalone`` lets the launcher pick a free port itself (no race between tests)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "train.py",
           *args]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        raise AssertionError(f"torchrun failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def train_args(kit, out: Path, name: str, *opts: str, flags=()) -> List[str]:
    return ["--root", str(kit.data), "--seed", "1", "--trainer", name, "--dataset-config-file", DATASET_CFG,
            "--config-file", method_config(name), "--output-dir", str(out), *flags, *kit.opts(), *opts]


def single_process_trainer(kit, out: Path, name: str, *opts: str, flags=()):
    """The trainer ``train.py`` builds from these arguments, in this process (the 1-process reference)."""
    from runs import cli
    from dassl.engine import build_trainer
    from dassl.utils import set_random_seed

    cfg = cli.setup_cfg(cli.build_parser().parse_args(train_args(kit, out, name, *opts, flags=flags)))
    set_random_seed(cfg.SEED)
    return build_trainer(cfg)


def assert_written_by_rank_zero_only(out: Path, model_name: str, epochs: int, proc) -> str:
    """Exactly one run's files: one log, one tensorboard event file, the checkpoints; one result."""
    log = (out / "log.txt").read_text()
    assert sorted(p.name for p in out.iterdir()) == sorted(["log.txt", "tensorboard", model_name, "config.yaml", "run.json"])
    assert len(list((out / "tensorboard").iterdir())) == 1
    assert sorted(p.name for p in (out / model_name).iterdir()) == ["checkpoint", f"model.pth.tar-{epochs}"]
    assert log.count("=> result") == 1 and proc.stdout.count("=> result") == 1  # rank 1 is muted
    assert f"* total: {TEST_SIZE}\n" in log
    return log


# Deterministic training: no random crop/flip, batches in dataset order. Global batch 16 = 2 × 8.
DETERMINISTIC = ["INPUT.TRANSFORMS", "['normalize']", "DATALOADER.TRAIN_X.SAMPLER", "SequentialSampler",
                 "DATALOADER.TRAIN_X.BATCH_SIZE", "16", "OPTIM.MAX_EPOCH", "3", "OPTIM.LR", "0.05",
                 "OPTIM.WARMUP_EPOCH", "0", "DATASET.NUM_SHOTS", "16"]


@pytest.mark.slow
def test_torchrun_coop_ends_with_the_weights_and_accuracy_of_one_process(kit, tmp_path):
    single = single_process_trainer(kit, tmp_path / "single", "CoOp", *DETERMINISTIC)
    single.train()
    want = torch.load(tmp_path / "single" / "prompt_learner" / "model.pth.tar-3", weights_only=True)["state_dict"]

    out = tmp_path / "two"
    proc = torchrun(2, *train_args(kit, out, "CoOp", *DETERMINISTIC))
    log = assert_written_by_rank_zero_only(out, "prompt_learner", 3, proc)
    assert "epoch [1/3] batch [5/5]" in log  # 80 images / global batch 16: the batch is split, not repeated
    got = torch.load(out / "prompt_learner" / "model.pth.tar-3", weights_only=True)["state_dict"]
    initial = single_process_trainer(kit, tmp_path / "init", "CoOp", *DETERMINISTIC).model.learnable.ctx
    assert (want["ctx"] - initial).abs().max() > 0.01  # training moved the context ...
    # ... and both runs moved it alike
    assert_close(got["ctx"], want["ctx"], what="context after 3 epochs on 2 ranks", ulps=TRAINING_ULPS)
    [accuracy] = accuracies(log)
    assert_accuracy_close(accuracy, single.test(), total=TEST_SIZE, what="accuracy on 2 ranks")


@pytest.mark.slow
def test_torchrun_gopro_with_random_augmentation_matches_one_process_within_tolerance(kit, tmp_path):
    opts = ["OPTIM.MAX_EPOCH", "2", "OPTIM.WARMUP_EPOCH", "0", "DATASET.NUM_SHOTS", "16"]
    single = single_process_trainer(kit, tmp_path / "single", "GOPro", *opts)
    single.train()
    out = tmp_path / "two"
    proc = torchrun(2, *train_args(kit, out, "GOPro", *opts))
    log = assert_written_by_rank_zero_only(out, "gopro", 2, proc)
    assert "epoch [2/2] batch [20/20]" in log  # 80 images / global batch 4 (2 per rank)
    assert re.search(r"loss_con \d", log)
    # Ranks draw different crops/views than one process does: only the accuracy is comparable.
    assert abs(accuracies(log)[-1] - single.test()) <= 10.0


@pytest.mark.slow
def test_torchrun_zero_shot_on_three_ranks_counts_every_test_image_once(kit, tmp_path):
    # 50 images on 3 ranks: shards of 17, 17 and 16 images, each in batches of 8 (the last ones partial).
    # The config's training batch (32) cannot be split over 3 ranks: evaluation must not care.
    opts = ["DATALOADER.TEST.BATCH_SIZE", "8"]
    want = single_process_trainer(kit, tmp_path / "single", "ZeroshotCLIP", *opts, flags=("--eval-only",)).test()
    out = tmp_path / "three"
    proc = torchrun(3, *train_args(kit, out, "ZeroshotCLIP", *opts, flags=("--eval-only",)))
    log = (out / "log.txt").read_text()
    assert f"* total: {TEST_SIZE}\n" in log and len(accuracies(log)) == 1
    assert_accuracy_close(accuracies(log)[0], want, total=TEST_SIZE, what="accuracy on 3 ranks")
    assert proc.stdout.count("=> result") == 1
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "log.txt", "run.json"]


def test_a_training_batch_that_ranks_cannot_split_fails_only_when_training(kit, tmp_path, monkeypatch):
    """E.g. CoCoOp's batch of 1 on 2 GPUs: evaluation (--eval-only) must still work."""
    from dassl.data import data_manager

    monkeypatch.setattr(data_manager, "is_distributed", lambda: True)  # rank 0 of 3 as the loaders see it
    monkeypatch.setattr(data_manager, "get_world_size", lambda: 3)
    monkeypatch.setattr(data_manager, "get_rank", lambda: 0)
    trainer = make_trainer(kit, tmp_path, "CoOp", "vit_b16_ctxv1", "OPTIM.MAX_EPOCH", "1")  # batch 32
    trainer.test()
    assert trainer.evaluator._total == 17  # rank 0's shard of 50 test images
    with pytest.raises(ValueError, match=r"training batch size \(32\) must be divisible by the number of "
                                         r"processes \(3\).*DATALOADER\.TRAIN_X"):
        trainer.train()
