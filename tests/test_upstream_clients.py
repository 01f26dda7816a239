"""Our trainers under an upstream client's ``train.py``.

Upstream CoOp, MaPLe and GOPro repos each define only their own config keys in ``extend_cfg``
(their trainers' ``extend_cfg``), never our speed keys (``TRUNCATE_TEXT`` ...) nor the GOPro switches,
and no node at all for methods they do not know (StyLIP, SLIP-style). Our trainers must still
build, train and evaluate there, taking their own defaults for whatever is missing.
"""
from __future__ import annotations

import shutil

import pytest
from yacs.config import CfgNode as CN

from conftest import REPO

# trainer → (node, the keys the upstream client's extend_cfg defines; None = the client has no node).
# Prompt depths are those of the tiny CLIP (3 blocks) instead of the upstream 9 / 12.
UPSTREAM_NODES = {
    "CoOp": ("COOP", dict(N_CTX=16, CSC=False, CTX_INIT="", PREC="fp16", CLASS_TOKEN_POSITION="end")),
    "CoCoOp": ("COCOOP", dict(N_CTX=16, CTX_INIT="", PREC="fp16")),
    "MaPLe": ("MAPLE", dict(N_CTX=2, CTX_INIT="a photo of a", PREC="fp16", PROMPT_DEPTH=3)),
    "IVLP": ("IVLP", dict(N_CTX_VISION=2, N_CTX_TEXT=2, CTX_INIT="a photo of a", PREC="fp16",
                          PROMPT_DEPTH_VISION=3, PROMPT_DEPTH_TEXT=3)),
    "VPT": ("VPT", dict(N_CTX_VISION=2, CTX_INIT="a photo of a", PREC="fp16", PROMPT_DEPTH_VISION=3)),
    "PromptSRC": ("PROMPTSRC", dict(N_CTX_VISION=4, N_CTX_TEXT=4, CTX_INIT="a photo of a", PREC="fp16",
                                    PROMPT_DEPTH_VISION=3, PROMPT_DEPTH_TEXT=3, TEXT_LOSS_WEIGHT=25,
                                    IMAGE_LOSS_WEIGHT=10, GPA_MEAN=15, GPA_STD=1)),
    "GOPro": ("GOPRO", dict(N_CTX=4, CTX_INIT="a photo of a", PREC="fp16")),
    "StyLIP": ("STYLIP", None),
    "SLIP": ("SLIP", None),
}


@pytest.fixture
def weights_dir(kit, tmp_path, monkeypatch):
    """The tiny CLIP where a user keeps official weights: $CLIP_WEIGHTS_DIR/ViT-B-16.pt."""
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(kit.clip_path, folder / "ViT-B-16.pt")
    monkeypatch.setenv("CLIP_WEIGHTS_DIR", str(folder))
    return folder


def upstream_cfg(kit, output_dir, trainer: str) -> CN:
    """The config an upstream client's setup_cfg builds: Dassl defaults + the client's own nodes."""
    from dassl.config import get_cfg_default

    cfg = get_cfg_default()
    node, keys = UPSTREAM_NODES[trainer]
    if keys is not None:
        cfg.TRAINER[node] = CN(keys)
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"
    cfg.merge_from_file(str(REPO / "configs" / "datasets" / "oxford_pets.yaml"))
    cfg.merge_from_list([
        "DATASET.ROOT", str(kit.data), "DATASET.NUM_SHOTS", 4, "OUTPUT_DIR", str(output_dir), "SEED", 1,
        "TRAINER.NAME", trainer, "MODEL.BACKBONE.NAME", "ViT-B/16", "INPUT.SIZE", (32, 32),
        "INPUT.TRANSFORMS", ("random_flip", "normalize"), "DATALOADER.NUM_WORKERS", 0,
        "DATALOADER.TRAIN_X.BATCH_SIZE", 4, "OPTIM.NAME", "sgd", "OPTIM.LR", 0.002, "OPTIM.MAX_EPOCH", 1,
        "USE_CUDA", False,
    ])
    cfg.freeze()
    assert "PATH" not in cfg.MODEL.BACKBONE and "TRUNCATE_TEXT" not in cfg.TRAINER.get(node, {})
    return cfg


@pytest.mark.parametrize("trainer", list(UPSTREAM_NODES))
def test_trainer_runs_with_only_the_upstream_config_keys(kit, tmp_path, weights_dir, trainer):
    from dassl.engine import build_trainer
    from dassl.utils import set_random_seed

    cfg = upstream_cfg(kit, tmp_path / "out", trainer)
    set_random_seed(cfg.SEED)
    built = build_trainer(cfg)
    node, keys = UPSTREAM_NODES[trainer]
    options = built.options
    if trainer not in ("SLIP", "VPT"):  # (these two have no learnable text prompts)
        assert options.TRUNCATE_TEXT is True  # our default fills the gap
    for key, value in (keys or {}).items():
        assert options[key] == value  # what the client set wins
    built.set_model_mode("train")
    built.batch_idx, built.num_batches = 0, 1
    summary = built.forward_backward(next(iter(built.train_loader_x)))
    assert summary["loss"] == summary["loss"]  # not NaN
    assert 0.0 <= built.test() <= 100.0


def test_an_upstream_value_outside_our_choices_is_still_refused(kit, tmp_path, weights_dir):
    from dassl.engine import build_trainer

    cfg = upstream_cfg(kit, tmp_path / "out", "CoOp")
    cfg.defrost()
    cfg.TRAINER.COOP.PREC = "fp8"
    cfg.freeze()
    with pytest.raises(ValueError, match=r"TRAINER\.COOP\.PREC must be one of"):
        build_trainer(cfg)


# ---- a client's own ``clip`` package ---------------------------------------------------------
# MaPLe-derived repositories (MaPLe, PromptSRC) ship a modified ``clip`` package that shadows the
# PyPI one: its ``build_model(state_dict, design_details)`` needs a dict of prompt depths, and its
# constructor reads these keys (``maple_length`` only for trainer "MaPLe").
DESIGN_KEYS = ("trainer", "vision_depth", "language_depth", "vision_ctx", "language_ctx")

STANDIN_INIT = '''"""Stand-in for a client repository's modified CLIP package."""
__path__.append({vanilla!r})  # tokenizer, downloader and loader of the vanilla package
from .clip import *  # noqa: F401,F403
'''

STANDIN_MODEL = '''"""MaPLe-style ``clip.model``: the vanilla model, built through ``build_model(state_dict, design_details)``."""
import importlib.util

_spec = importlib.util.spec_from_file_location("vanilla_clip_model", {vanilla_model!r})
_vanilla = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_vanilla)
globals().update({{k: v for k, v in vars(_vanilla).items() if not k.startswith("__")}})

DESIGNS = []  # every design_details this package was asked to build


def build_model(state_dict: dict, design_details):
    trainer = design_details["trainer"]
    sizes = {{key: design_details[key] for key in {keys!r}[1:]}}
    if trainer not in ("CoOp", "CoCoOp", "IVLP", "VPT", "MaPLe"):
        raise AssertionError(f"unknown trainer {{trainer!r}}")
    if trainer == "MaPLe":
        sizes["maple_length"] = design_details["maple_length"]
    if any(sizes.values()):
        raise AssertionError(f"prompt parameters inside CLIP: {{design_details}}")
    DESIGNS.append(dict(design_details))
    return _vanilla.build_model(state_dict)
'''

# Runs in a subprocess with the stand-in first on sys.path: build, one step, evaluate, per trainer.
CLIENT_RUN = '''
import json, sys
sys.path[:0] = [{standin!r}, {tests!r}]
import clip.model
assert clip.model.__file__.startswith({standin!r}), clip.model.__file__
from pathlib import Path
from test_upstream_clients import upstream_cfg  # (its conftest puts the repository on sys.path)
from tools.kit.build import Kit
from dassl.engine import build_trainer
from dassl.utils import set_random_seed
import datasets.oxford_pets, trainers.coop, trainers.maple, trainers.gopro  # as a client's train.py does

results = {{}}
for name in {trainers!r}:
    cfg = upstream_cfg(Kit(Path({kit!r})), Path({out!r}) / name, name)
    set_random_seed(cfg.SEED)
    trainer = build_trainer(cfg)
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 1
    loss = trainer.forward_backward(next(iter(trainer.train_loader_x)))["loss"]
    results[name] = dict(loss=loss, accuracy=trainer.test())
print("RESULT", json.dumps(dict(results=results, designs=clip.model.DESIGNS)))
'''


def write_maple_style_clip(folder) -> None:
    """``folder/clip``: a package of the shape the MaPLe repository ships, delegating to PyPI's."""
    import importlib.util

    vanilla = importlib.util.find_spec("clip").submodule_search_locations[0]
    package = folder / "clip"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(STANDIN_INIT.format(vanilla=vanilla))
    (package / "model.py").write_text(STANDIN_MODEL.format(vanilla_model=f"{vanilla}/model.py", keys=DESIGN_KEYS))


def test_takes_design_details_reads_the_signature():
    from trainers.clip_backbone import takes_design_details

    def vanilla(state_dict: dict): ...
    def maple(state_dict: dict, design_details): ...
    def optional(state_dict, design_details=None): ...
    def other_option(state_dict, strict=True): ...

    assert not takes_design_details(vanilla) and not takes_design_details(other_option)
    assert takes_design_details(maple) and takes_design_details(optional)


@pytest.mark.slow
def test_trainers_load_clip_through_a_maple_style_clip_package(kit, tmp_path, weights_dir):
    """Under a client whose ``clip.model.build_model`` wants ``design_details`` (MaPLe's repo),
    CLIP loads as plain CLIP and our trainers build, train a step and evaluate."""
    import json
    import os
    import subprocess
    import sys

    standin = tmp_path / "client"
    write_maple_style_clip(standin)
    trainers = ["CoOp", "MaPLe", "GOPro"]  # class-shared, deep and per-image prompts
    script = CLIENT_RUN.format(standin=str(standin), tests=str(REPO / "tests"), kit=str(kit.root),
                               out=str(tmp_path / "out"), trainers=trainers)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CLIP_WEIGHTS_DIR": str(weights_dir)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert len(report["designs"]) == len(trainers)  # every trainer's CLIP went through the stand-in
    for design in report["designs"]:
        assert set(DESIGN_KEYS) <= set(design) and design["trainer"] == "IVLP"
        assert not any(design[key] for key in DESIGN_KEYS[1:])
    for name in trainers:
        result = report["results"][name]
        assert result["loss"] == result["loss"] and 0.0 <= result["accuracy"] <= 100.0
