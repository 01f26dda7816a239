"""Our trainers under an upstream client's ``train.py``.

Upstream CoOp, MaPLe and GOPro repos each define only their own config keys in ``extend_cfg``
(methods spec 3, 5.5, 8.2), never our speed keys (``TRUNCATE_TEXT`` ...) nor the GOPro switches,
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
    options = built.method_cfg
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
