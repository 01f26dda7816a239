"""CLIP-LoRA (trainers/clip_lora.py): the update by hand, the hook in the shared backbone, upstream's
positions and file, and train.py on the kit."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import REPO, accuracies, make_trainer, run_train
from numerics import assert_close, assert_differs
from trainers.clip_lora import POSITIONS, LowRankUpdate, attach_lora

DATASET_CFG = str(REPO / "configs/datasets/oxford_pets.yaml")
CONFIG = str(REPO / "configs/trainers/CLIPLoRA/vit_b16.yaml")


def test_low_rank_update_by_hand():
    update = LowRankUpdate(2, 1, rank=2, alpha=1.0, dropout=0.25).eval()  # eval: no dropout
    with torch.no_grad():
        update.lora_A.copy_(torch.eye(2))
        update.lora_B.copy_(torch.tensor([[1.0, 1.0]]))
    # (α / √r) · B A x = (1 / √2) · (1 + 2)
    assert_close(update(torch.tensor([[1.0, 2.0]])), torch.tensor([[3.0 / math.sqrt(2.0)]]), what="LoRA update")


def test_a_fresh_update_is_zero_and_dropout_acts_only_in_training():
    update = LowRankUpdate(4, 3, rank=2, alpha=1.0, dropout=0.5)
    assert torch.equal(update(torch.randn(5, 4)), torch.zeros(5, 3))  # B starts at zero
    with torch.no_grad():
        update.lora_B.normal_()
    x = torch.randn(64, 4)
    assert not torch.equal(update.train()(x), update.eval()(x))
    assert torch.equal(update.eval()(x), update.eval()(x))


def test_positions_are_upstreams_tables_at_twelve_blocks():
    upstream = {"top": [11], "top3": [9, 10, 11], "bottom": [0, 1, 2, 3], "mid": [4, 5, 6, 7], "up": [8, 9, 10, 11],
                "half-up": [6, 7, 8, 9, 10, 11], "half-bottom": [0, 1, 2, 3, 4, 5], "all": list(range(12))}
    assert {name: list(rule(12)) for name, rule in POSITIONS.items()} == upstream
    assert list(POSITIONS["half-up"](24)) == list(range(12, 24))  # upstream's ViT-L/14 row


def test_lora_rides_on_the_unmodified_attention_of_both_towers(kit, tmp_path):
    trainer = make_trainer(kit, tmp_path, "GDA", "vit_b16")  # any trainer with a plain backbone
    backbone = trainer.backbone
    images = next(iter(trainer.test_loader))["img"][:4]
    tokens = backbone.tokenize(["a photo of a cat.", "a photo of a dog."])
    plain_image, plain_text = backbone.encode_image(images).features, backbone.encode_tokens(tokens)
    from trainers.clip_lora import extend_cfg
    from yacs.config import CfgNode as CN

    cfg = CN()
    cfg.TRAINER = CN()
    extend_cfg(cfg)
    updates = attach_lora(backbone, cfg.TRAINER.CLIPLORA).eval()
    blocks = len(backbone.clip.transformer.resblocks) + len(backbone.clip.visual.transformer.resblocks)
    assert len(updates) == blocks
    assert all(type(b.attn) is torch.nn.MultiheadAttention for b in backbone.clip.transformer.resblocks)
    # B = 0: exactly zero-shot CLIP
    assert torch.equal(backbone.encode_image(images).features, plain_image)
    assert torch.equal(backbone.encode_tokens(tokens), plain_text)
    with torch.no_grad():
        for parameter in updates.parameters():
            parameter.normal_(std=0.5)
    assert_differs(backbone.encode_image(images).features, plain_image, what="image features with LoRA")
    assert_differs(backbone.encode_tokens(tokens), plain_text, what="text features with LoRA")


def write_upstream_lora(path, updates, metadata):
    """Upstream's save_lora layout: layer_<i> in our block order, q/k/v_proj, w_lora_A / w_lora_B."""
    weights = {}
    for i, layer in enumerate(updates.values()):
        weights[f"layer_{i}"] = {f"{p}_proj": {"w_lora_A": torch.randn_like(layer.qkv[p].lora_A),
                                               "w_lora_B": torch.randn_like(layer.qkv[p].lora_B)} for p in "qkv"}
    torch.save({"weights": weights, "metadata": metadata}, path)
    return weights


UPSTREAM_METADATA = {"r": 2, "alpha": 1, "encoder": "both", "params": ["q", "k", "v"], "position": "all"}


@pytest.mark.slow
def test_an_upstream_lora_file_loads_in_process_and_through_train_py(kit, tmp_path):
    trainer = make_trainer(kit, tmp_path / "probe", "CLIPLoRA", "vit_b16", "TRAINER.CLIPLORA.N_ITERS", "1")
    updates = trainer._models["lora"]
    (tmp_path / "upstream").mkdir()
    weights = write_upstream_lora(tmp_path / "upstream" / "lora_weights.pt", updates, UPSTREAM_METADATA)
    trainer.load_model(str(tmp_path / "upstream"))
    last = list(updates)[-1]
    assert torch.equal(updates[last].qkv["v"].lora_B, weights[f"layer_{len(updates) - 1}"]["v_proj"]["w_lora_B"])
    assert torch.equal(updates["text_0"].qkv["q"].lora_A, weights["layer_0"]["q_proj"]["w_lora_A"])

    out = tmp_path / "eval"
    run_train("--root", str(kit.data), "--seed", "1", "--trainer", "CLIPLoRA", "--dataset-config-file", DATASET_CFG,
              "--config-file", CONFIG, "--output-dir", str(out), "--eval-only", "--model-dir", str(tmp_path / "upstream"),
              *kit.opts(), "DATASET.NUM_SHOTS", "16")
    log = (out / "log.txt").read_text()
    assert "Loaded upstream CLIP-LoRA weights" in log and len(accuracies(log)) == 1

    torch.save({"weights": weights, "metadata": {**UPSTREAM_METADATA, "r": 4}}, tmp_path / "upstream" / "lora_weights.pt")
    with pytest.raises(ValueError, match="r: file 4 vs TRAINER.CLIPLORA 2"):
        trainer.load_model(str(tmp_path / "upstream"))


@pytest.mark.slow
def test_clip_lora_trains_its_iterations_and_eval_only_reproduces_it(kit, tmp_path):
    def args(out, *flags):
        return ["--root", str(kit.data), "--seed", "1", "--trainer", "CLIPLoRA", "--dataset-config-file", DATASET_CFG,
                "--config-file", CONFIG, "--output-dir", str(out), *flags, *kit.opts(), "DATASET.NUM_SHOTS", "4",
                "TRAINER.CLIPLORA.N_ITERS", "2", "DATALOADER.TRAIN_X.BATCH_SIZE", "8", "TRAIN.PRINT_FREQ", "1"]

    run_train(*args(tmp_path / "train"))
    log = (tmp_path / "train" / "log.txt").read_text()
    # 5 classes x 4 shots = 20 images, batches of 8 (the last one dropped): 2 per pass; 2 x 4 = 8 iterations
    assert "8 iterations (2 x 4 shots) in 1 epoch(s) of 8; 2 batches per pass" in log
    assert "batch [8/8]" in log and "lr 1.0000e-06" in log  # the cosine ends at eta_min on the last iteration
    state = torch.load(tmp_path / "train" / "lora" / "model.pth.tar-1", weights_only=True)["state_dict"]
    assert state and all(k.endswith(("lora_A", "lora_B")) for k in state)  # LoRA tensors only
    trained = accuracies(log)
    run_train(*args(tmp_path / "eval", "--eval-only", "--model-dir", str(tmp_path / "train"), "--load-epoch", "last"))
    assert accuracies((tmp_path / "eval" / "log.txt").read_text()) == trained
