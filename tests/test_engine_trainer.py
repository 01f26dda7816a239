"""dassl.engine: TrainerBase bookkeeping, and TrainerX end to end on a toy dataset and model."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from dassl.config import get_cfg_default
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum
from dassl.engine import TRAINER_REGISTRY, TrainerBase, TrainerX, build_trainer
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import count_num_param
from numerics import assert_close

PROGRESS = re.compile(
    r"^epoch \[(\d+)/(\d+)\] batch \[(\d+)/(\d+)\] time \d+\.\d{3} \(\d+\.\d{3}\) data \d+\.\d{3} \(\d+\.\d{3}\) "
    r"loss \d+\.\d{4} \(\d+\.\d{4}\) acc \d+\.\d{4} \(\d+\.\d{4}\) lr (\d\.\d{4}e[-+]\d{2}) eta \d+:\d{2}:\d{2}$",
    re.M,
)


# ----------------------------------------------------------------------------- toy data + trainer
@DATASET_REGISTRY.register(force=True)
class EngineToyDataset(DatasetBase):
    """Dark images are class 0 ("dark"), bright ones class 1 ("bright"); files under DATASET.ROOT."""

    def __init__(self, cfg):
        root = Path(cfg.DATASET.ROOT)

        def split(name):
            return [
                Datum(impath=str(path), label=int(path.parent.name[-1]), classname=path.parent.name[:-2])
                for path in sorted((root / name).glob("*/*.png"))
            ]

        super().__init__(train_x=split("train"), val=split("val"), test=split("test"))


def write_toy_images(root: Path, counts=(("train", 8), ("val", 2), ("test", 5))) -> Path:
    gen = torch.Generator().manual_seed(0)
    for split, per_class in counts:
        for label, (name, level) in enumerate([("dark", 40), ("bright", 215)]):
            folder = root / split / f"{name}_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                noise = torch.randint(-30, 30, (10, 10, 3), generator=gen)
                pixels = (noise + level).clamp(0, 255).to(torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


class ToyNet(nn.Module):
    """One conv layer, global pooling, a linear classifier: [B, 3, H, W] -> [B, num_classes]."""

    def __init__(self, num_classes: int, width: int = 8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, kernel_size=3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(image))


@TRAINER_REGISTRY.register(force=True)
class EngineToyTrainer(TrainerX):
    """Follows the client convention: build and register the model with an optimizer and
    scheduler from ``cfg.OPTIM``; optimise every batch, step the scheduler after the last."""

    nan_at_batch = None  # set on a subclass to inject a NaN loss

    def build_model(self):
        print("Building model")
        self.model = ToyNet(self.num_classes).to(self.device)
        print(f"# params: {count_num_param(self.model):,}")
        self.optim = build_optimizer(self.model, self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model("model", self.model, self.optim, self.sched)

    def forward_backward(self, batch):
        image, label, _ = self.parse_batch_train(batch)
        output = self.model(image)
        loss = F.cross_entropy(output, label)
        if self.nan_at_batch == (self.epoch, self.batch_idx):
            loss = loss * float("nan")
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}


class CrashAtEpoch(Exception):
    pass


@TRAINER_REGISTRY.register(force=True)
class EngineCrashingTrainer(EngineToyTrainer):
    """Dies at the start of epoch index 2, as a killed job would."""

    def before_epoch(self):
        if self.epoch == 2:
            raise CrashAtEpoch


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    return write_toy_images(tmp_path_factory.mktemp("toy"))


def make_cfg(root: Path, output_dir: Path, *opts: str, trainer: str = "EngineToyTrainer"):
    cfg = get_cfg_default()
    cfg.merge_from_list([
        "DATASET.ROOT", str(root), "DATASET.NAME", "EngineToyDataset", "TRAINER.NAME", trainer,
        "OUTPUT_DIR", str(output_dir), "USE_CUDA", "False",
        "INPUT.SIZE", "(8, 8)", "INPUT.TRANSFORMS", "['random_flip', 'normalize']",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "3",
        "OPTIM.NAME", "sgd", "OPTIM.LR", "0.05", "OPTIM.MAX_EPOCH", "3", "OPTIM.LR_SCHEDULER", "cosine",
        "OPTIM.WARMUP_EPOCH", "1", "OPTIM.WARMUP_TYPE", "constant", "TRAIN.PRINT_FREQ", "2",
        *opts,
    ])
    cfg.freeze()
    return cfg


def build(cfg):
    torch.manual_seed(0)
    return build_trainer(cfg)


# ----------------------------------------------------------------------------- end to end
def test_trainerx_trains_saves_and_tests(toy_root, tmp_path, capsys):
    trainer = build(make_cfg(toy_root, tmp_path))
    assert isinstance(trainer.model, ToyNet) and trainer.num_classes == 2
    assert trainer.dm.dataset.classnames == ["dark", "bright"]
    trainer.train()
    out = capsys.readouterr().out

    order = ["Loading trainer: EngineToyTrainer", "Loading dataset: EngineToyDataset", "Building model",
             "# params: ", "Loading evaluator: Classification", "No checkpoint found, train from scratch",
             f"Initialize tensorboard (log_dir={tmp_path / 'tensorboard'})", "epoch [1/3] batch [2/4]",
             f"Checkpoint saved to {tmp_path / 'model' / 'model.pth.tar-3'}", "Finish training",
             "Deploy the last-epoch model", "Evaluate on the *test* set", "=> result\n* total: 10\n", "Elapsed: 0:00:"]
    positions = [out.index(marker) for marker in order]
    assert positions == sorted(positions)

    lines = PROGRESS.findall(out)
    assert [(e, b) for e, _, b, _, _ in lines] == [(str(e), str(b)) for e in (1, 2, 3) for b in (2, 4)]
    # the last batch of an epoch already shows the next epoch's lr (scheduler stepped inside)
    lrs = {(e, b): float(lr) for e, _, b, _, lr in lines}
    assert lrs[("1", "2")] == pytest.approx(1e-5) and lrs[("1", "4")] == pytest.approx(0.05)
    assert lrs[("2", "2")] == pytest.approx(0.05)

    ckpt_dir = tmp_path / "model"
    assert sorted(os.listdir(ckpt_dir)) == ["checkpoint", "model.pth.tar-3"]
    assert (ckpt_dir / "checkpoint").read_text() == "model.pth.tar-3\n"
    ckpt = torch.load(ckpt_dir / "model.pth.tar-3", weights_only=True)
    assert ckpt["epoch"] == 3 and ckpt["val_result"] is None and "rng_state" in ckpt
    assert isinstance(ckpt["scheduler"]["successor"], dict)
    assert any(name.startswith("events") for name in os.listdir(tmp_path / "tensorboard"))
    match = re.search(r"\* accuracy: ([\d.]+)%", out)
    assert float(match.group(1)) >= 50.0


def test_max_batches_bound_each_epoch_and_the_test(toy_root, tmp_path, capsys):
    """TRAIN.MAX_BATCHES 2 of the 4 batches per epoch (the scheduler still steps at the capped end:
    epoch 2 runs at the post-warm-up lr) and TEST.MAX_BATCHES 2 of the 4 test batches (6 of 10 images)."""
    trainer = build(make_cfg(toy_root, tmp_path, "TRAIN.MAX_BATCHES", "2", "TEST.MAX_BATCHES", "2",
                             "TRAIN.PRINT_FREQ", "1"))
    trainer.train()
    out = capsys.readouterr().out
    lines = PROGRESS.findall(out)
    assert [(e, b, n) for e, _, b, n, _ in lines] == [(str(e), str(b), "2") for e in (1, 2, 3) for b in (1, 2)]
    lrs = {(e, b): float(lr) for e, _, b, _, lr in lines}
    assert lrs[("1", "1")] == pytest.approx(1e-5) and lrs[("2", "1")] == pytest.approx(0.05)
    assert "TEST.MAX_BATCHES 2: only the first 2 of 4 batches" in out
    assert "* total: 6\n" in out


def test_rerun_of_finished_run_goes_straight_to_final_test(toy_root, tmp_path, capsys):
    build(make_cfg(toy_root, tmp_path)).train()
    capsys.readouterr()
    trainer = build(make_cfg(toy_root, tmp_path))
    trainer.train()
    out = capsys.readouterr().out
    assert f"Found checkpoint at {tmp_path} (will resume training)" in out
    assert trainer.start_epoch == 3 and "epoch [" not in out
    assert "Finish training" in out and "=> result" in out


def test_resume_after_crash_matches_uninterrupted_run(toy_root, tmp_path, capsys):
    straight_dir, crashed_dir = tmp_path / "straight", tmp_path / "crashed"
    build(make_cfg(toy_root, straight_dir, "TRAIN.CHECKPOINT_FREQ", "1")).train()

    crashing = build(make_cfg(toy_root, crashed_dir, "TRAIN.CHECKPOINT_FREQ", "1", trainer="EngineCrashingTrainer"))
    with pytest.raises(CrashAtEpoch):
        crashing.train()
    assert sorted(os.listdir(crashed_dir / "model")) == ["checkpoint", "model.pth.tar-1", "model.pth.tar-2"]
    capsys.readouterr()

    torch.manual_seed(12345)  # a fresh process would start from a different RNG state
    resumed = build(make_cfg(toy_root, tmp_path / "elsewhere", "TRAIN.CHECKPOINT_FREQ", "1", "RESUME", str(crashed_dir)))
    resumed.train()
    out = capsys.readouterr().out
    assert "Loaded RNG states" in out and "Previous epoch: 2" in out
    assert "epoch [3/3]" in out and "epoch [2/3]" not in out

    expected = torch.load(straight_dir / "model" / "model.pth.tar-3", weights_only=True)
    got = torch.load(tmp_path / "elsewhere" / "model" / "model.pth.tar-3", weights_only=True)
    for key, value in expected["state_dict"].items():
        assert torch.equal(got["state_dict"][key], value), key
    assert_close(got["scheduler"]["_last_lr"], expected["scheduler"]["_last_lr"], what="resumed scheduler lr")


def test_best_val_policy_and_load_model(toy_root, tmp_path, capsys):
    trainer = build(make_cfg(toy_root, tmp_path, "TEST.FINAL_MODEL", "best_val", "OPTIM.MAX_EPOCH", "2"))
    trainer.train()
    out = capsys.readouterr().out
    assert out.count("Evaluate on the *val* set") == 2
    assert "Deploy the model with the best val performance" in out
    assert re.search(rf"Load {re.escape(str(tmp_path / 'model' / 'model-best.pth.tar'))} to model "
                     r"\(epoch=\d, val_result=\d+\.\d\)", out)
    assert (tmp_path / "model" / "model-best.pth.tar").is_file()


def test_load_model_handles_missing_and_none_val_result(toy_root, tmp_path, capsys):
    build(make_cfg(toy_root, tmp_path, "OPTIM.MAX_EPOCH", "1")).train()
    trainer = build(make_cfg(toy_root, tmp_path / "eval", "OPTIM.MAX_EPOCH", "1"))
    capsys.readouterr()
    trainer.load_model("")
    assert "load_model() is skipped" in capsys.readouterr().out
    trainer.load_model(str(tmp_path), epoch=1)
    assert f"Load {tmp_path / 'model' / 'model.pth.tar-1'} to model (epoch=1, val_result=None)" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="model-best.pth.tar"):
        trainer.load_model(str(tmp_path))
    assert trainer.test() >= 0.0  # eval-only path: no writer, epoch 0


def test_nan_loss_names_epoch_batch_and_fix(toy_root, tmp_path):
    @TRAINER_REGISTRY.register(force=True)
    class EngineNaNTrainer(EngineToyTrainer):
        nan_at_batch = (1, 2)

    trainer = build(make_cfg(toy_root, tmp_path, trainer="EngineNaNTrainer"))
    with pytest.raises(FloatingPointError, match=r"epoch 2, batch 3.*PREC fp32.*OPTIM\.LR"):
        trainer.train()


def test_distributed_sampler_gets_epoch(toy_root, tmp_path):
    from torch.utils.data import DataLoader, DistributedSampler

    trainer = build(make_cfg(toy_root, tmp_path, "OPTIM.MAX_EPOCH", "2", "TEST.NO_TEST", "True"))
    dataset = trainer.train_loader_x.dataset
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True)
    trainer.train_loader_x = DataLoader(dataset, batch_size=4, sampler=sampler)
    trainer.train()
    assert sampler.epoch == 1


def test_build_trainer_unknown_name(toy_root, tmp_path):
    cfg = make_cfg(toy_root, tmp_path)
    cfg.defrost()
    cfg.TRAINER.NAME = "EngineToyTrainr"
    with pytest.raises(ValueError, match="do you mean \\[EngineToyTrainer\\]"):
        build_trainer(cfg)


# ----------------------------------------------------------------------------- TrainerBase units
class Bare(TrainerBase):
    pass


def test_register_model_rules():
    class Forgot(TrainerBase):
        def __init__(self):
            pass

    with pytest.raises(AttributeError, match="super"):
        Forgot().register_model("m", nn.Linear(1, 1))
    trainer = Bare()
    trainer.register_model("a", nn.Linear(1, 1))
    trainer.register_model("b", nn.Linear(1, 1), optim=None, sched=None)
    with pytest.raises(AssertionError, match="duplicate"):
        trainer.register_model("a", nn.Linear(1, 1))
    assert trainer.get_model_names() == ["a", "b"]
    assert trainer.get_model_names("b") == ["b"]
    with pytest.raises(AssertionError):
        trainer.get_model_names(("a", "b"))  # only lists are recognised: a tuple is one (unknown) name


def test_modes_update_lr_and_anomaly():
    trainer = Bare()
    model = nn.Linear(2, 2)
    optim = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(optim, step_size=1, gamma=0.5)
    trainer.register_model("m", model, optim, sched)
    trainer.set_model_mode("eval")
    assert not model.training
    trainer.set_model_mode("train")
    assert model.training
    with pytest.raises(KeyError):
        trainer.set_model_mode("inference")
    optim.step()
    trainer.update_lr()
    assert optim.param_groups[0]["lr"] == 0.5
    with pytest.raises(FloatingPointError, match="PREC fp32"):
        trainer.detect_anomaly(torch.tensor([1.0, float("inf")]))
    trainer.detect_anomaly(torch.tensor(1.0))
    for call in (trainer.run_epoch, trainer.test, lambda: trainer.forward_backward({}),
                 lambda: trainer.model_inference(None)):
        with pytest.raises(NotImplementedError):
            call()


def test_model_backward_and_update_order():
    trainer = Bare()
    model = nn.Linear(1, 1, bias=False)
    nn.init.constant_(model.weight, 1.0)
    optim = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer.register_model("m", model, optim)
    model.weight.grad = torch.full_like(model.weight, 100.0)  # stale grad must be zeroed first
    loss = model(torch.ones(1, 1)).sum()
    trainer.model_backward_and_update(loss)
    assert_close(model.weight.detach(), torch.full((1, 1), 1 - 0.1 * 1.0), what="weight after one SGD step")


def test_model_inference_forwards_extra_arguments(toy_root, tmp_path):
    trainer = build(make_cfg(toy_root, tmp_path))
    trainer.model = lambda image, label=None, scale=1: (image, label, scale)
    assert trainer.model_inference("x", "y", scale=3) == ("x", "y", 3)


def test_a_trainer_must_build_its_model(toy_root, tmp_path):
    @TRAINER_REGISTRY.register(force=True)
    class EngineModellessTrainer(TrainerX):
        pass

    with pytest.raises(NotImplementedError, match="EngineModellessTrainer must implement build_model"):
        build(make_cfg(toy_root, tmp_path, trainer="EngineModellessTrainer"))
