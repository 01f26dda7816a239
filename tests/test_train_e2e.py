"""The real ``train.py`` on the tiny kit: ZS-CLIP and CoOp end to end, eval-only, CLI errors."""
from __future__ import annotations

import json
import os
import re

import pytest

from conftest import (REPO, accuracies, copy_of_repository, follow_readme_guide, readme_guide, run_base2new_steps,
                      run_train)

DATASET_CFG = str(REPO / "configs/datasets/oxford_pets.yaml")
COOP_CFG = str(REPO / "configs/trainers/CoOp/vit_b16_ctxv1.yaml")
LOSS = re.compile(r"loss [\d.]+ \(([\d.]+)\)")


def coop_args(kit, out, *opts, flags=()):
    return ["--root", str(kit.data), "--seed", "1", "--trainer", "CoOp", "--dataset-config-file", DATASET_CFG,
            "--config-file", COOP_CFG, "--output-dir", str(out), *flags, *kit.opts(), *opts]


def test_zero_shot_clip_evaluates_with_the_dataset_template(kit, tmp_path):
    proc = run_train("--root", str(kit.data), "--trainer", "ZeroshotCLIP", "--dataset-config-file", DATASET_CFG,
                     "--config-file", COOP_CFG, "--output-dir", str(tmp_path), "--eval-only", *kit.opts())
    log = (tmp_path / "log.txt").read_text()
    assert "a photo of a {}, a type of pet." in log
    assert "* total: 50" in log and len(accuracies(log)) == 1
    assert proc.stdout.count("=> result") == 1


@pytest.mark.slow
def test_coop_trains_beats_chance_and_eval_only_reproduces_the_accuracy(kit, tmp_path):
    out = tmp_path / "coop"
    run_train(*coop_args(kit, out, "OPTIM.MAX_EPOCH", "8", "OPTIM.LR", "0.05", "DATALOADER.TRAIN_X.BATCH_SIZE", "16"))
    log = (out / "log.txt").read_text()
    # learnable synthetic task: the loss goes down and accuracy beats chance (5 classes: 20%)
    running_losses = [float(v) for v in LOSS.findall(log)]
    assert running_losses[-1] < running_losses[0]
    assert "Finish training" in log and "Deploy the last-epoch model" in log
    trained = accuracies(log)[-1]
    assert trained > 60.0
    assert (out / "prompt_learner" / "model.pth.tar-8").is_file()
    assert (out / "prompt_learner" / "checkpoint").read_text().strip() == "model.pth.tar-8"

    evaluated = tmp_path / "eval"
    run_train(*coop_args(kit, evaluated, flags=("--eval-only", "--model-dir", str(out), "--load-epoch", "8")))
    assert accuracies((evaluated / "log.txt").read_text()) == [trained]


def test_coop_base_to_new_checkpoint_loads_for_the_other_label_space(kit, tmp_path):
    base = tmp_path / "base"
    run_train(*coop_args(kit, base, "OPTIM.MAX_EPOCH", "1", "DATASET.SUBSAMPLE_CLASSES", "base"))
    new = tmp_path / "new"
    run_train(*coop_args(kit, new, "DATASET.SUBSAMPLE_CLASSES", "new",
                         flags=("--eval-only", "--model-dir", str(base), "--load-epoch", "1")))
    assert "# classes  2" in (new / "log.txt").read_text()


@pytest.mark.parametrize("args, message", [
    (["--trainer", "NoSuchTrainer"], "NoSuchTrainer"),
    (["--trainer", "CoOp", "OPTIM.NOPE", "1"], "OPTIM.NOPE"),
    (["--trainer", "CoOp", "OPTIM.MAX_EPOCH", "two"], "OPTIM.MAX_EPOCH"),
    (["--trainer", "CoOp", "--config-file", "configs/trainers/CoOp/missing.yaml"], "missing.yaml"),
])
def test_bad_command_lines_say_what_is_wrong(kit, tmp_path, args, message):
    proc = run_train("--root", str(kit.data), "--dataset-config-file", DATASET_CFG, "--output-dir", str(tmp_path),
                     *args, check=False)
    assert proc.returncode != 0 and message in proc.stderr.splitlines()[-1]  # the one-line "Error: ..." ending


def test_unknown_trainer_error_lists_the_registered_names(kit, tmp_path):
    proc = run_train("--root", str(kit.data), "--dataset-config-file", DATASET_CFG, "--output-dir", str(tmp_path),
                     "--trainer", "GoPro", *kit.opts(), check=False)
    assert "GOPro" in proc.stderr and "CoOp" in proc.stderr


def test_missing_dataset_folder_points_at_the_expected_path(kit, tmp_path):
    proc = run_train("--root", str(tmp_path / "nowhere"), "--trainer", "ZeroshotCLIP", "--eval-only",
                     "--dataset-config-file", DATASET_CFG, "--output-dir", str(tmp_path / "o"), *kit.opts(), check=False)
    assert proc.returncode != 0
    assert "oxford_pets" in proc.stderr and "DATASETS.md" in proc.stderr


@pytest.mark.slow
def test_a_dataset_file_dropped_into_a_copy_of_the_repo_trains_without_editing_train_py(kit, tmp_path):
    """DATASETS.md's "Adding a new dataset" example, done for real in a temporary copy of the repo."""
    import shutil
    import subprocess
    import sys

    from tools.kit.make_fixture_datasets import Params, write_image

    repo = tmp_path / "repo"
    for name in ("dassl", "datasets", "trainers", "configs", "tools", "runs"):
        shutil.copytree(REPO / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "train.py", repo / "train.py")
    section = (REPO / "DATASETS.md").read_text().split("## Adding a new dataset", 1)[1]
    code = re.search(r"```python\n# datasets/my_dataset.py\n(.*?)```", section, re.S).group(1)
    config = re.search(r"```yaml\n# configs/datasets/my_dataset.yaml\n(.*?)```", section, re.S).group(1)
    (repo / "datasets" / "my_dataset.py").write_text(code)
    (repo / "configs" / "datasets" / "my_dataset.yaml").write_text(config)
    for label, folder in enumerate(("cat", "dog", "emu")):
        for n in range(8):
            write_image(tmp_path / "data" / "my_dataset" / "images" / folder / f"{n}.jpg", label, n,
                        Params(3, 8, 8, 32, 0, "my_dataset"))
    proc = subprocess.run(
        [sys.executable, "train.py", "--root", str(tmp_path / "data"), "--seed", "1", "--trainer", "CoOp",
         "--dataset-config-file", "configs/datasets/my_dataset.yaml", "--config-file",
         "configs/trainers/CoOp/vit_b16_ctxv1.yaml", "--output-dir", str(tmp_path / "out"), *kit.opts(),
         "OPTIM.MAX_EPOCH", "1"], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "Loading dataset: MyDataset" in log and "Finish training" in log and len(accuracies(log)) == 1


UPSTREAM_STYLE_TRAINER = """
# An upstream-style trainer file: no extend_cfg of its own, only the Dassl API upstream CoOp uses,
# and only the TRAINER.COOP keys upstream CoOp's train.py defines.
import os.path as osp

import torch.nn as nn
from torch.nn import functional as F

from dassl.engine import TRAINER_REGISTRY, TrainerX
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import load_checkpoint, load_pretrained_weights


class PixelProbe(nn.Module):
    def __init__(self, n_cls):
        super().__init__()
        self.prompt_learner = nn.Linear(3, n_cls)

    def forward(self, image):
        return self.prompt_learner(image.mean(dim=(2, 3)))


@TRAINER_REGISTRY.register()
class CoOp(TrainerX):
    def check_cfg(self, cfg):
        assert cfg.TRAINER.COOP.PREC in ["fp16", "fp32", "amp"]

    def build_model(self):
        cfg = self.cfg
        c = cfg.TRAINER.COOP
        print(f"upstream keys: N_CTX={c.N_CTX} CSC={c.CSC} CTX_INIT={c.CTX_INIT} POS={c.CLASS_TOKEN_POSITION}")
        self.model = PixelProbe(len(self.dm.dataset.classnames)).to(self.device)
        if cfg.MODEL.INIT_WEIGHTS:
            load_pretrained_weights(self.model.prompt_learner, cfg.MODEL.INIT_WEIGHTS)
        self.optim = build_optimizer(self.model.prompt_learner, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model("prompt_learner", self.model.prompt_learner, self.optim, self.sched)

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        output = self.model(image)
        loss = F.cross_entropy(output, label)
        self.model_backward_and_update(loss)
        summary = {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def load_model(self, directory, epoch=None):
        model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        for name in self.get_model_names():
            model_path = osp.join(directory, name, model_file)
            checkpoint = load_checkpoint(model_path)
            print(f"Loading weights to {name} from {model_path} (epoch = {checkpoint['epoch']})")
            self._models[name].load_state_dict(checkpoint["state_dict"], strict=False)
"""


def test_an_upstream_style_trainer_folder_runs_with_our_train_py(kit, tmp_path):
    """A checkout whose trainers/ holds only an upstream-style CoOp file (no extend_cfg): train.py
    itself defines the upstream trainer nodes, so the paper config and the kit's options merge, the
    run trains and saves, and --eval-only --model-dir gives the same accuracy."""
    import shutil
    import subprocess
    import sys

    repo = tmp_path / "repo"
    for name in ("dassl", "datasets", "configs", "tools", "runs"):
        shutil.copytree(REPO / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "train.py", repo / "train.py")
    (repo / "trainers").mkdir()
    (repo / "trainers" / "__init__.py").write_text("")
    (repo / "trainers" / "coop.py").write_text(UPSTREAM_STYLE_TRAINER)
    common = ["--root", str(kit.data), "--seed", "1", "--trainer", "CoOp",
              "--dataset-config-file", "configs/datasets/oxford_pets.yaml",
              "--config-file", "configs/trainers/CoOp/vit_b16_ctxv1.yaml"]

    # The kit's options for the trainer nodes this checkout still has (train.py defines the
    # upstream clients' nodes; the other methods' files are not in the copy).
    pairs = list(zip(kit.opts()[::2], kit.opts()[1::2]))
    upstream_nodes = ("COOP", "COCOOP", "MAPLE", "IVLP", "VPT", "GOPRO", "PROMPTSRC")
    kit_opts = [x for key, value in pairs if not key.startswith("TRAINER.") or key.split(".")[1] in upstream_nodes
                for x in (key, value)]

    def run(*args):
        proc = subprocess.run([sys.executable, "train.py", *common, *args], cwd=repo, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        return proc.stdout

    run("--output-dir", str(tmp_path / "out"), *kit_opts, "OPTIM.MAX_EPOCH", "2")
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "upstream keys: N_CTX=16 CSC=False CTX_INIT=a photo of a POS=end" in log and "Finish training" in log
    evaluated = run("--output-dir", str(tmp_path / "eval"), "--eval-only", "--model-dir", str(tmp_path / "out"),
                    "--load-epoch", "2", *kit_opts)
    assert len(accuracies(log)) == 1 and accuracies(evaluated) == accuracies(log)


@pytest.mark.slow
def test_the_readme_method_runs_its_protocol_from_one_file_configs_and_a_registry_entry(kit, tmp_path):
    """README "Adding a method", done for real in a copy of the repository: the trainer file, its
    config and one line in the registry; then scripts/run.sh trains it base-to-new on the kit and
    evaluates the last epoch on the new classes, with no other edit anywhere."""
    repo = copy_of_repository(tmp_path / "repo")
    follow_readme_guide(repo, readme_guide("### Adding a method"),
                        ["trainers/smooth_coop.py", "configs/trainers/SmoothCoOp/vit_b16.yaml"],
                        r"```python\n(    Method\(\"smooth_coop\".*?\n)```", "\n)}\nPAPER_METHODS")
    run_base2new_steps(repo, "smooth_coop", {"DATA": str(kit.data), "OUTPUT": str(tmp_path / "out"), "EPOCHS": "2",
                                             "EXTRA_OPTS": " ".join(kit.opts())})
    runs = tmp_path / "out" / "base2new"
    train = (runs / "train_base/oxford_pets/shots_16/SmoothCoOp/vit_b16/seed1/log.txt").read_text()
    test = (runs / "test_new/oxford_pets/shots_16/SmoothCoOp/vit_b16/seed1/log.txt").read_text()
    assert "Finish training" in train and len(accuracies(train)) == 1
    assert "model.pth.tar-2" in test and "# classes  2" in test and len(accuracies(test)) == 1


def test_leave_one_domain_out_run_on_pacs(kit, tmp_path):
    """Multi-source DG: train on three PACS domains, test on the held-out one (configs/datasets/dg/)."""
    from dg_fixtures import write_pacs

    data = tmp_path / "DATA"
    write_pacs(data, domains=("art_painting", "cartoon", "photo", "sketch"))
    out = tmp_path / "coop_pacs_sketch"
    run_train("--root", str(data), "--seed", "1", "--trainer", "CoOp",
              "--dataset-config-file", str(REPO / "configs/datasets/dg/pacs_sketch.yaml"),
              "--config-file", str(REPO / "configs/trainers/CoOp/vit_b16_ep50_ctxv1.yaml"), "--output-dir", str(out),
              *kit.opts(), "OPTIM.MAX_EPOCH", "1")
    log = (out / "log.txt").read_text()
    assert "Source     ('art_painting', 'cartoon', 'photo')\nTarget     ('sketch',)" in log
    assert "# train_x  9\n" in log  # one train-list image per class and source domain
    assert "* total: 6\n" in log and len(accuracies(log)) == 1  # sketch's train + crossval lists, minus the bad entry
    assert sorted(os.listdir(out / "prompt_learner")) == ["checkpoint", "model.pth.tar-1"]
    settings = json.loads((out / "run.json").read_text())["settings"]
    assert (settings["DATASET.NAME"], settings["DATASET.TARGET_DOMAINS"]) == ("PACS", ["sketch"])
