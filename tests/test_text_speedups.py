"""The text-side speed-ups change no result: EOT truncation, length buckets, the shared per-image
prefix, chunking (with activation checkpointing), evaluation image groups, cached class features,
and batching instead of per-image loops. Everything is compared in fp32 up to rounding, with the
scale-aware tolerance of ``numerics.assert_close`` (the same on every CPU and thread count)."""
from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch

from conftest import make_trainer
from numerics import assert_accuracy_close, assert_close
from trainers.clip_backbone import ClipBackbone, length_buckets, load_clip
from trainers.prompts import ClassPrompts, TextEncoding, encode_class_prompts

# Class names of very different token lengths, so that length buckets and truncation matter.
NAMES = ["cat", "tench", "great white shark", "soft-coated wheaten terrier", "Mexican hairless dog (xoloitzcuintli)",
         "goldfish", "American Staffordshire Terrier", "hen"]
TRAINERS = {  # trainer → paper config; batch 4 like GOPro's; test batches of 8 (several per evaluation)
    "CoOp": "vit_b16_ep50_ctxv1", "CoCoOp": "vit_b16_c4_ep10_batch1_ctxv1", "GOPro": "vit_b16"}


@pytest.fixture(scope="module")
def backbone(tiny_clip_path) -> ClipBackbone:
    return ClipBackbone(load_clip("ViT-B/16", str(tiny_clip_path)), precision="fp32", device="cpu")


@pytest.fixture(scope="module")
def trainers(kit, tmp_path_factory):
    built = {}

    def get(name: str):
        if name not in built:
            built[name] = make_trainer(kit, tmp_path_factory.mktemp(name), name, TRAINERS[name],
                                       "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATALOADER.TEST.BATCH_SIZE", "8")
        return built[name]
    return get


@contextlib.contextmanager
def text_encoding(model, **changes):
    """Temporarily run ``model``'s text tower with other ``TextEncoding`` settings (truncate,
    chunk, checkpointing); class prompts follow ``truncate``."""
    saved = model.text_encoding
    model.text_encoding = dataclasses.replace(saved, **changes)
    templates = [m for m in model.modules() if isinstance(m, ClassPrompts)]
    for template in templates:
        template.truncate = model.text_encoding.truncate
    try:
        yield
    finally:
        model.text_encoding = saved
        for template in templates:
            template.truncate = saved.truncate


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def class_prompts(backbone: ClipBackbone, names=NAMES):
    tokens = backbone.tokenize([f"a photo of a {n}." for n in names])
    return backbone.embed_tokens(tokens), tokens.argmax(-1)


# ---- the text tower ---------------------------------------------------------------------------
def test_length_buckets_cover_every_sequence_once_and_split_long_from_short():
    eot = torch.tensor([7] * 100 + [40] + [8] * 50)
    buckets = length_buckets(eot, chunk_size=64)
    assert sorted(torch.cat(buckets).tolist()) == list(range(len(eot)))
    assert all(len(b) <= 64 for b in buckets)
    assert [eot[b].unique().tolist() for b in buckets][-1] == [40]  # the long one alone: no padding to 41
    assert all(len(eot[b].unique()) <= 2 for b in buckets)
    assert len(length_buckets(torch.tensor([9, 9, 10, 9]))) == 1  # similar lengths run together


def test_truncated_bucketed_and_chunked_text_features_equal_the_full_77_tokens(backbone):
    prompts, eot = class_prompts(backbone)
    full = backbone.encode_text(prompts, eot, truncate=False)
    reference = backbone.clip.encode_text(backbone.tokenize([f"a photo of a {n}." for n in NAMES])).float()
    assert_close(full, reference, what="our text tower vs CLIP's encode_text")
    assert len(length_buckets(eot)) > 1  # the test exercises several truncation lengths
    for chunk in (0, 3):
        for truncate in (True, False):
            assert_close(backbone.encode_text(prompts, eot, truncate=truncate, chunk_size=chunk), full,
                         what=f"text features, truncate={truncate}, chunk={chunk}")


@pytest.mark.parametrize("chunk, checkpointing", [(0, False), (5, False), (5, True)])
def test_shared_prefix_gives_the_same_features_and_gradients(backbone, chunk, checkpointing):
    """Per-image prompts: G images × C classes whose first P positions (SOS + context) are shared."""
    embedded, eot = class_prompts(backbone)
    groups, classes, prefix_len = 3, len(NAMES), 5  # SOS + "a photo of a"
    context = torch.randn(groups, prefix_len - 1, backbone.text_width, generator=torch.Generator().manual_seed(1))
    features, grads = [], []
    for shared in (0, prefix_len):
        ctx = context.clone().requires_grad_(True)
        prefix = torch.cat([embedded[:1, :1].expand(groups, -1, -1), ctx], dim=1)          # [G, P, D]
        prompts = torch.cat([prefix.unsqueeze(1).expand(-1, classes, -1, -1),
                             embedded[:, prefix_len:].expand(groups, -1, -1, -1)], dim=2).flatten(0, 1)
        out = backbone.encode_text(prompts, eot.repeat(groups), chunk_size=chunk, checkpointing=checkpointing,
                                   shared_prefix=shared, group_size=classes)
        out.pow(2).sum().backward()
        features.append(out.detach())
        grads.append(ctx.grad)
    assert_close(features[1], features[0], what="features with a shared prefix")
    assert_close(grads[1], grads[0], what="context gradients with a shared prefix")
    assert grads[0].abs().sum() > 0


def test_shared_prefix_rejects_groups_that_do_not_fit(backbone):
    prompts, eot = class_prompts(backbone)
    with pytest.raises(ValueError, match="group_size=3"):
        backbone.encode_text(prompts, eot, shared_prefix=5, group_size=3)  # 8 sequences
    with pytest.raises(ValueError, match="end after the prefix"):
        backbone.encode_text(prompts, eot, shared_prefix=30, group_size=len(NAMES))


# ---- trainers: batched vs looped, chunked vs not, cached vs not --------------------------------
def test_gopro_batched_per_image_features_equal_a_loop_of_full_length_calls(trainers):
    model = trainers("GOPro").model
    learner = model.learnable.prompt_learner
    assert learner.shared_prefix == 1 + learner.n_ctx  # SOS + "a photo of a"
    with torch.no_grad():
        _, mean, std = model.encode_with_stats(images(4))
        g = model.primitives(mean, std)
        batched = model.text_features([g, g], ["orig", "moco"])                          # [2, B, C, E]
        with text_encoding(model, truncate=False):  # one 77-token call per image and view, as upstream loops
            looped = torch.stack([torch.stack([
                encode_class_prompts(model.backbone, learner, learner.assemble(ctx), model.text_encoding)
                for ctx in learner.ctx + model.learnable.rho_for(view)(g)]) for view in ("orig", "moco")])
    assert_close(batched, looped, what="GOPro batched vs looped class features")


@pytest.mark.parametrize("name", ["CoOp", "CoCoOp", "GOPro"])
def test_chunked_text_and_image_groups_give_the_same_logits(trainers, name):
    trainer = trainers(name)
    trainer.set_model_mode("eval")
    x = images(5)
    with torch.no_grad():
        whole = trainer.model(x).logits
        with text_encoding(trainer.model, chunk=7):  # 7 < C·B: several text calls and image groups
            chunked = trainer.model(x).logits
    assert_close(chunked, whole, what=f"{name} logits, chunked vs whole")


def test_gopro_chunked_checkpointed_training_step_has_the_same_loss_and_gradients(trainers):
    trainer = trainers("GOPro")
    batch = {"img": images(4, 1), "img2": images(4, 2), "img3": images(4, 3), "label": torch.tensor([0, 1, 2, 3])}
    trainer.set_model_mode("train")
    params = [p for p in trainer.model.learnable.parameters() if p.requires_grad]
    results = []
    for settings in ({}, {"chunk": 6, "checkpointing": True}, {"truncate": False}):
        with text_encoding(trainer.model, **settings):
            loss, _ = trainer.compute_loss(batch)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        results.append((loss.detach(), grads))
    # Back-propagation rounds relative to the largest gradient: a bias in front of BatchNorm has an
    # exact gradient of 0 and gets rounding noise of that size, not of its own.
    scale = max(g.abs().max() for g in results[0][1] if g is not None)
    for loss, grads in results[1:]:
        assert_close(loss, results[0][0], what="GOPro loss")
        for param, got, expected in zip(params, grads, results[0][1]):
            if expected is not None:
                assert_close(got, expected, what=f"GOPro gradient of a {tuple(param.shape)} parameter", scale=scale)


def test_coop_evaluation_with_cached_class_features_equals_recomputing_them(trainers, monkeypatch):
    trainer = trainers("CoOp")
    model = trainer.model
    runs = {}
    for cached in (True, False):
        logits, encodings = [], []
        encode = model.raw_text_features
        monkeypatch.setattr(model, "raw_text_features", lambda: encodings.append(1) or encode())
        inference = trainer.model_inference
        monkeypatch.setattr(trainer, "model_inference", lambda x: logits.append(inference(x)) or logits[-1])
        if not cached:
            monkeypatch.setattr(model, "caching", contextlib.nullcontext)
        accuracy = trainer.test()
        runs[cached] = (accuracy, torch.cat(logits), len(encodings), len(logits))
        monkeypatch.undo()
    (acc_c, logits_c, enc_c, batches), (acc_u, logits_u, enc_u, _) = runs[True], runs[False]
    assert batches > 1 and enc_c == 1 and enc_u == batches  # once per evaluation vs once per batch
    assert_accuracy_close(acc_c, acc_u, total=len(logits_c), what="CoOp accuracy, cached vs recomputed")
    assert_close(logits_c, logits_u, what="CoOp logits, cached vs recomputed class features")
