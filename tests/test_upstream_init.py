"""IVLP, VPT, PromptSRC and ProGrad start from upstream's initial prompts (and generator) for the same seed.

Upstream (MaPLe / PromptSRC repositories) draws every deep prompt inside its patched CLIP's
constructor, in construction order and between CLIP's own default initialisations; the prompt
learner's random ``ctx`` comes after the whole CLIP. The expected values below are that order
written out by hand: the same ops from the same seeded generator, compared with ``torch.equal``.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from conftest import make_trainer
from tools.kit.build import TINY_LAYERS

SEED = 1  # make_trainer seeds like train.py (--seed 1)
N_TEXT, N_VISION = 3, 2


def normal(n: int, width: int) -> torch.Tensor:
    return nn.init.normal_(torch.empty(n, width), std=0.02)


def block_weights(width: int, heads: int) -> None:
    """What CLIP's ResidualAttentionBlock constructor draws: attention, c_fc, c_proj."""
    nn.MultiheadAttention(width, heads)
    nn.Linear(width, 4 * width)
    nn.Linear(4 * width, width)


def upstream_construction(clip_model, vision_depth: int, text_depth: int, n_vision: int, n_text: int):
    """Upstream's patched CLIP constructor, prompt draws included, as a flat list of the draws it makes."""
    visual = clip_model.visual
    width_v, width_t = visual.conv1.out_channels, clip_model.ln_final.weight.shape[0]
    heads_v = visual.transformer.resblocks[0].attn.num_heads
    heads_t = clip_model.transformer.resblocks[0].attn.num_heads
    vision, text = [], []
    nn.Conv2d(3, width_v, visual.conv1.kernel_size, visual.conv1.stride, bias=False)   # conv1
    if vision_depth:
        vision.append(normal(n_vision, width_v))                                         # VPT
    torch.randn(visual.class_embedding.shape)                                            # class_embedding
    torch.randn(visual.positional_embedding.shape)                                       # positional_embedding
    for j in range(TINY_LAYERS):                                                         # vision blocks
        block_weights(width_v, heads_v)
        if 1 <= j < vision_depth:
            vision.append(normal(n_vision, width_v))                                     # VPT_shallow
    torch.randn(visual.proj.shape)                                                       # proj
    for j in range(TINY_LAYERS):                                                         # text blocks
        block_weights(width_t, heads_t)
        if 1 <= j < text_depth:
            text.append(normal(n_text, width_t))
    return vision, text


def state_after_stock_clip(kit, prompt_shapes) -> torch.Tensor:
    """Generator state upstream reaches after its CLIP: the stock construction plus the prompts'
    draws (a stream: where they sit does not change how much they consume)."""
    from trainers.clip_backbone import load_clip

    torch.manual_seed(SEED)
    load_clip("ViT-B/16", str(kit.clip_path))
    for shape in prompt_shapes:
        normal(*shape)
    return torch.get_rng_state()


@pytest.mark.parametrize("vision_depth, text_depth", [(TINY_LAYERS, TINY_LAYERS), (2, 3), (0, 2)])
def test_ivlp_starts_from_upstreams_prompts_for_the_same_seed(kit, tmp_path, vision_depth, text_depth):
    trainer = make_trainer(kit, tmp_path, "IVLP", "vit_b16_c2_ep5_batch4_2+2ctx", "TRAINER.IVLP.CTX_INIT", "",
                           "TRAINER.IVLP.N_CTX_TEXT", str(N_TEXT), "TRAINER.IVLP.N_CTX_VISION", str(N_VISION),
                           "TRAINER.IVLP.PROMPT_DEPTH_VISION", str(vision_depth),
                           "TRAINER.IVLP.PROMPT_DEPTH_TEXT", str(text_depth))
    prompts = trainer.model.learnable
    torch.manual_seed(SEED)
    vision, text = upstream_construction(trainer.backbone.clip, vision_depth, text_depth, N_VISION, N_TEXT)
    if vision_depth:
        got_vision = [prompts.image_encoder.VPT, *prompts.image_encoder.deep_prompts()]
        assert len(got_vision) == len(vision) == vision_depth
        assert all(torch.equal(g.detach().cpu(), e) for g, e in zip(got_vision, vision))
    else:
        assert prompts.image_encoder is None and vision == []
    got_text = prompts.text_encoder.deep_prompts()
    assert len(got_text) == len(text) == text_depth - 1
    assert all(torch.equal(g.detach().cpu(), e) for g, e in zip(got_text, text))
    # The random ctx is drawn by the prompt learner, after upstream's whole CLIP.
    torch.set_rng_state(state_after_stock_clip(kit, [p.shape for p in vision + text]))
    assert torch.equal(prompts.prompt_learner.ctx.detach().cpu(), normal(N_TEXT, trainer.backbone.text_width))


def test_vpt_starts_from_upstreams_prompts_and_leaves_the_generator_where_upstream_does(kit, tmp_path):
    depth = 2
    trainer = make_trainer(kit, tmp_path, "VPT", "vit_b16_c2_ep5_batch4_4",
                           "TRAINER.VPT.PROMPT_DEPTH_VISION", str(depth))
    after_build = torch.get_rng_state()
    tower = trainer.model.learnable.image_encoder
    torch.manual_seed(SEED)
    vision, _ = upstream_construction(trainer.backbone.clip, depth, 0, trainer.options.N_CTX_VISION, 0)
    got = [tower.VPT, *tower.deep_prompts()]
    assert len(got) == len(vision) == depth
    assert all(torch.equal(g.detach().cpu(), e) for g, e in zip(got, vision))
    assert torch.equal(after_build, state_after_stock_clip(kit, [p.shape for p in vision]))


def test_the_old_draw_order_would_differ(kit, tmp_path):
    """The pin can fail: prompts drawn one after another after CLIP (the previous order) are not upstream's."""
    trainer = make_trainer(kit, tmp_path, "VPT", "vit_b16_c2_ep5_batch4_4", "TRAINER.VPT.PROMPT_DEPTH_VISION", "2")
    torch.set_rng_state(state_after_stock_clip(kit, []))
    naive = normal(*trainer.model.learnable.image_encoder.VPT.shape)
    assert not torch.equal(trainer.model.learnable.image_encoder.VPT.detach().cpu(), naive)


def test_the_replay_draws_exactly_what_building_clip_draws(kit):
    """``replay_clip_init`` against the real CLIP constructor (the clip package's build_model)."""
    from trainers.clip_backbone import ClipBackbone, load_clip
    from trainers.upstream_init import replay_clip_init

    backbone = ClipBackbone(load_clip("ViT-B/16", str(kit.clip_path)))
    torch.manual_seed(SEED)
    load_clip("ViT-B/16", str(kit.clip_path))
    built = torch.get_rng_state()
    torch.manual_seed(SEED)
    replay_clip_init(backbone)
    assert torch.equal(torch.get_rng_state(), built)
    torch.manual_seed(SEED)
    replay_clip_init(backbone, vision=(2, 2))  # plus upstream's prompts: more draws
    assert not torch.equal(torch.get_rng_state(), built)


def test_promptsrc_starts_training_where_upstreams_generator_stands(kit, tmp_path):
    """Upstream's PromptSRC builds two more (teacher) CLIPs after its prompts; the first training
    batch must see the same generator state."""
    from trainers.clip_backbone import load_clip

    trainer = make_trainer(kit, tmp_path, "PromptSRC", "vit_b16_c2_ep20_batch4_4+4ctx",
                           "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", "2", "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", "3")
    trainer.before_train()
    started = torch.get_rng_state()
    prompts = [*trainer.model.learnable.image_encoder.parameters(), *trainer.model.learnable.text_encoder.parameters()]
    torch.set_rng_state(state_after_stock_clip(kit, [p.shape for p in prompts]))  # ctx: from CTX_INIT, no draw
    load_clip("ViT-B/16", str(kit.clip_path))
    load_clip("ViT-B/16", str(kit.clip_path))
    assert torch.equal(started, torch.get_rng_state())
    trainer.close_writer()


@pytest.mark.parametrize("ctx_init", ["", "template"])
def test_prograd_starts_from_upstreams_context_and_data_order_for_the_same_seed(kit, tmp_path, ctx_init):
    """Upstream's ProGrad loads CLIP twice (student, then its zero-shot teacher) before its prompt
    learner draws a random context; the data loader shuffles after all of it."""
    from trainers.clip_backbone import load_clip

    trainer = make_trainer(kit, tmp_path, "ProGrad", "vit_b16", "TRAINER.COOP.CTX_INIT", ctx_init)
    after_build = torch.get_rng_state()
    ctx = trainer.model.learnable.ctx.detach().cpu()
    torch.manual_seed(SEED)
    load_clip("ViT-B/16", str(kit.clip_path))   # the student's CLIP
    load_clip("ViT-B/16", str(kit.clip_path))   # the teacher's
    if not ctx_init:
        assert torch.equal(ctx, normal(16, trainer.backbone.text_width))
    assert torch.equal(after_build, torch.get_rng_state())

    def first_epoch_order(state: torch.Tensor) -> list:
        torch.set_rng_state(state)
        return [batch["index"].tolist() for batch in trainer.train_loader_x]

    upstream_order = first_epoch_order(torch.get_rng_state())
    assert first_epoch_order(after_build) == upstream_order
    torch.manual_seed(SEED)
    load_clip("ViT-B/16", str(kit.clip_path))  # one CLIP only: what the trainer did before the replay
    if not ctx_init:
        normal(16, trainer.backbone.text_width)
    assert first_epoch_order(torch.get_rng_state()) != upstream_order
