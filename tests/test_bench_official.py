"""bench/official_gopro.py: the official GOPro cost model computes our official mode's numbers
with the official amount of work."""
from __future__ import annotations

import sys

import pytest
import torch

from conftest import REPO, make_trainer
from dassl.utils import set_random_seed

sys.path.insert(0, str(REPO / "bench"))
import official_gopro  # noqa: E402

BATCH = 4


def build(kit, path, reference: bool):
    opts = ("DATALOADER.TRAIN_X.BATCH_SIZE", str(BATCH), *official_gopro.OPTS)
    trainer = make_trainer(kit, path, "GOPro", official_gopro.CONFIG, *opts)
    if not reference:
        return trainer
    set_random_seed(trainer.cfg.SEED)  # same weights as the GOPro trainer
    return official_gopro.OfficialCostGOPro(trainer.cfg)


@pytest.fixture(scope="module")
def pair(kit, tmp_path_factory):
    ours = build(kit, tmp_path_factory.mktemp("ours"), reference=False)
    return ours, build(kit, tmp_path_factory.mktemp("reference"), reference=True)


def seeded(compute):
    set_random_seed(0)
    return compute()


@pytest.mark.slow
def test_reference_computes_the_losses_and_logits_of_our_official_mode(pair):
    ours, reference = pair
    batch = next(iter(ours.train_loader_x))
    for trainer in pair:
        trainer.set_model_mode("train")
    expected = seeded(lambda: ours.compute_loss(batch)[1])
    measured = seeded(lambda: reference.compute_loss(batch)[1])
    assert set(measured) == set(expected)
    for key, value in expected.items():
        assert measured[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    images = batch["img"][:3]
    for trainer in pair:
        trainer.set_model_mode("eval")
    with torch.no_grad():
        torch.testing.assert_close(seeded(lambda: reference.model_inference(images)), ours.model_inference(images))


@pytest.mark.slow
def test_reference_does_the_official_work_per_step_and_per_test_batch(pair, monkeypatch):
    reference = pair[1]
    calls = {"augmix": 0, "text": [], "vision": []}
    make_augmix = official_gopro.augmix_view

    def counting_augmix(*args, **kwargs):
        augmix = make_augmix(*args, **kwargs)
        return lambda image: calls.__setitem__("augmix", calls["augmix"] + 1) or augmix(image)

    monkeypatch.setattr(official_gopro, "augmix_view", counting_augmix)
    clip_model = reference.backbone.clip
    clip_model.transformer.register_forward_hook(lambda m, args, out: calls["text"].append(tuple(args[0].shape[:2])))
    clip_model.visual.register_forward_hook(lambda m, args, out: calls["vision"].append(len(args[0])))
    num_classes, context = reference.num_classes, reference.backbone.context_length

    reference.set_model_mode("train")
    reference.batch_idx, reference.num_batches = 0, 2
    reference.forward_backward(next(iter(reference.train_loader_x)))
    assert calls["augmix"] == BATCH ** 2  # B views of every image, image 0's kept
    assert calls["vision"] == [BATCH] * 3  # one pass per branch
    assert calls["text"] == [(context, num_classes)] * (3 * BATCH)  # per branch, one 77-token call per image

    calls.update(augmix=0, text=[], vision=[])
    test_batch = 5
    reference.set_model_mode("eval")
    with torch.no_grad():
        logits = reference.model_inference(torch.randn(test_batch, 3, 32, 32))
    assert logits.shape == (test_batch, num_classes)
    assert calls["augmix"] == test_batch ** 2 and calls["vision"] == [test_batch] * 3
    assert calls["text"] == [(context, num_classes)] * (3 * test_batch)


def test_reference_refuses_a_config_it_does_not_model(kit, tmp_path):
    trainer = make_trainer(kit, tmp_path, "GOPro", official_gopro.CONFIG)  # truncated text
    with pytest.raises(ValueError, match="TRUNCATE_TEXT False"):
        official_gopro.OfficialCostGOPro(trainer.cfg)
