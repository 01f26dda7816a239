"""TCP: class-aware tokens from the TKE written into the text tower before block TKE_BLOCK, the
knowledge-guided loss, upstream checkpoints (also through ``train.py --eval-only --model-dir``),
Adam's eps, the registry and the scripts end to end on the tiny kit."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import make_trainer
from numerics import assert_close, assert_differs
from test_baselines import one_batch, write_upstream_checkpoint
from test_modern_baselines import evaluate_upstream_checkpoint, parameters_a_step_changes, run_base2new_scripts
from runs.methods import METHODS
from trainers.tcp import CLASS_PHRASES, TCP, class_phrases

CONFIG = "vit_b16_ep100_ctxv1"
# Upstream's prompt_learner on the tiny CLIP (E = 32, D_t = 64, 5 classes, N_CTX 4).
UPSTREAM_SHAPES = {"ctx": (4, 64), "meta_net.linear1.weight": (8, 32), "meta_net.linear1.bias": (8,),
                   "meta_net.linear2.weight": (256, 8), "meta_net.linear2.bias": (256,),
                   "token_prefix": (5, 1, 64), "token_suffix": (5, 72, 64)}


@pytest.fixture(scope="module")
def trainer(kit, tmp_path_factory):
    return make_trainer(kit, tmp_path_factory.mktemp("tcp"), "TCP", CONFIG)


def text_features_by_hand(model) -> torch.Tensor:
    """CLIP's text tower run block by block on the full 77 tokens, positions 1..n of every prompt
    overwritten by its class-aware tokens before block TKE_BLOCK (counted from 1): [C, E]."""
    clip, learner = model.backbone.clip, model.learnable
    n_cls = learner.n_cls
    ctx = learner.ctx.unsqueeze(0).expand(n_cls, -1, -1)
    x = torch.cat([learner.token_prefix, ctx, learner.token_suffix], dim=1) + clip.positional_embedding
    tokens = model.learnable.meta_net(model.teacher.features())                        # [C, n, D_t]
    x = x.permute(1, 0, 2)                                                              # [T, C, D_t]
    for index, block in enumerate(clip.transformer.resblocks):
        if index == model.tke_block - 1:
            x = torch.cat([x[:1], tokens.permute(1, 0, 2), x[1 + tokens.shape[1]:]])
        x = block(x)
    x = clip.ln_final(x.permute(1, 0, 2))
    features = x[torch.arange(n_cls), learner.tokenized_prompts.argmax(-1)] @ clip.text_projection
    return F.normalize(features, dim=-1)


# ---- the model ----------------------------------------------------------------------------------
def test_class_aware_tokens_enter_the_text_tower_before_the_configured_block(trainer):
    model = trainer.model
    assert model.tke_block == 3  # the kit places upstream's block 9 of 12 on the tiny CLIP's last block
    with torch.no_grad():
        ours, by_hand = model.text_features(), text_features_by_hand(model)
        assert_close(ours, by_hand, what="TCP text features vs a block-by-block tower")
        learner = model.learnable
        plain = F.normalize(model.backbone.encode_text(learner.assemble(), learner.eot), dim=-1)
    assert_differs(ours, plain, what="class-aware tokens change the class features")


def test_per_class_tokens_cannot_share_a_prompt_prefix(trainer):
    """Per-sequence deep prompts change the positions a shared prefix would reuse: refused."""
    model, learner = trainer.model, trainer.model.learnable
    with torch.no_grad(), pytest.raises(ValueError, match="per-sequence ones change the prefix"):
        model.backbone.encode_text(learner.assemble(), learner.eot, deep_prompts=model.deep_prompts(),
                                   shared_prefix=5, group_size=learner.n_cls)


def test_tke_maps_each_class_feature_to_its_own_tokens(trainer):
    model = trainer.model
    meta_net = model.learnable.meta_net
    with torch.no_grad():
        teacher = model.teacher.features()
        tokens = model.class_aware_tokens()
        hidden = teacher @ meta_net.linear1.weight.t() + meta_net.linear1.bias
        hidden = hidden * torch.sigmoid(1.702 * hidden)  # QuickGELU
        by_hand = (hidden @ meta_net.linear2.weight.t() + meta_net.linear2.bias).reshape(5, 4, 64)
    assert tokens.shape == (5, 4, 64)
    assert_close(tokens, by_hand, what="TKE vs its layers by hand")
    assert_differs(tokens[0], tokens[1], what="two classes get different tokens")


def test_prompts_use_tcps_dataset_phrase_and_the_teacher_upstreams_template(trainer):
    assert trainer.model.teacher.template == "a photo of a {}, a type of pet."
    assert class_phrases("OxfordPets", ["great_pyrenees"]) == ["great pyrenees, a type of pet"]
    assert class_phrases("SomeNewDataset", ["x"]) == ["x"]
    backbone, learner = trainer.backbone, trainer.model.learnable
    name = trainer.dm.dataset.classnames[0]
    expected = backbone.embed_tokens(backbone.tokenize([f"X X X X {CLASS_PHRASES['OxfordPets'].format(name)}."]))
    assert torch.equal(learner.token_suffix[0], expected[0, 5:])


def test_context_is_random_and_a_block_outside_the_tower_is_refused(kit, tmp_path, trainer):
    ctx = trainer.model.learnable.ctx
    assert ctx.shape == (4, 64) and ctx.dtype == torch.float32
    assert ctx.std().item() == pytest.approx(0.02, rel=0.35)
    for block in ("1", "4"):
        with pytest.raises(ValueError, match=rf"TRAINER\.TCP\.TKE_BLOCK={block} must lie in 2\.\.3"):
            make_trainer(kit, tmp_path / block, "TCP", CONFIG, "TRAINER.TCP.TKE_BLOCK", block)


# ---- the loss and the step ------------------------------------------------------------------------
def test_step_loss_is_cross_entropy_plus_w_times_the_guidance_term(trainer):
    assert trainer.options.W == 8.0
    model = trainer.model
    image, label = trainer.parse_batch_train(one_batch(trainer))
    trainer.set_model_mode("train")
    loss, summary = trainer.compute_loss({"img": image, "label": label})
    with torch.no_grad():
        text, teacher = text_features_by_hand(model), model.teacher.features()
        logits = 100.0 * model.visual_embedding(image) @ text.t()
        ce = F.cross_entropy(logits, label)
        kg = 1.0 - (text * F.normalize(teacher, dim=-1)).sum(-1).mean()
    logged = {k: torch.tensor(v, dtype=torch.float32) for k, v in summary.items()}  # the log's floats
    assert_close(logged["loss_ce"], ce, what="TCP CE")
    assert_close(logged["loss_kg"], kg, what="TCP guidance term", scale=1.0)
    assert_close(loss.detach(), ce + 8.0 * kg, what="TCP loss", scale=max(1.0, loss.item()))
    assert kg.item() > 1e-4


def test_only_context_and_tke_learn_with_adam_eps_1e_3(kit, tmp_path):
    trainer = make_trainer(kit, tmp_path, "TCP", CONFIG)
    assert {g["eps"] for g in trainer.optim.param_groups} == {1e-3}
    assert type(trainer.optim).__name__ == "Adam"
    assert parameters_a_step_changes(trainer) == sorted(k for k in UPSTREAM_SHAPES if not k.startswith("token_"))


# ---- checkpoints ----------------------------------------------------------------------------------
def test_checkpoint_has_upstream_name_keys_and_shapes(trainer, tmp_path):
    trainer.save_model(0, str(tmp_path))
    saved = torch.load(tmp_path / "prompt_learner" / "model.pth.tar-1", weights_only=True)
    assert {k: tuple(v.shape) for k, v in saved["state_dict"].items()} == UPSTREAM_SHAPES


def upstream_state(n_cls: int = 3) -> dict:
    """An upstream TCP ``prompt_learner`` state (fp16, trained on ``n_cls`` other classes)."""
    generator = torch.Generator().manual_seed(0)
    state = {k: (0.1 * torch.randn(shape, generator=generator)).half() for k, shape in UPSTREAM_SHAPES.items()}
    state["token_prefix"], state["token_suffix"] = state["token_prefix"][:n_cls], state["token_suffix"][:n_cls]
    return state


def test_upstream_checkpoint_evaluates_with_eval_only_and_model_dir(kit, tmp_path):
    log = evaluate_upstream_checkpoint(kit, tmp_path, "TCP", CONFIG, "prompt_learner", 50, upstream_state())
    assert str(tmp_path / "upstream" / "prompt_learner" / "model.pth.tar-50") in log  # the upstream file was evaluated


def test_upstream_checkpoint_loads_its_tensors_and_keeps_this_runs_classes(trainer, tmp_path):
    state = upstream_state()
    write_upstream_checkpoint(tmp_path, "prompt_learner", 50, state)
    learner = trainer.model.learnable
    suffix = learner.token_suffix.clone()
    trainer.load_model(str(tmp_path), 50)
    loaded = learner.state_dict()
    for key in UPSTREAM_SHAPES:
        if not key.startswith("token_"):
            assert loaded[key].dtype == torch.float32
            assert torch.equal(loaded[key], state[key].float())
    assert torch.equal(learner.token_suffix, suffix)


# ---- registry and scripts -------------------------------------------------------------------------
def test_registry_entry_points_at_the_config_and_the_kit_block_key():
    method = METHODS["tcp"]
    assert (method.trainer, method.b2n_cfg, method.xd_cfg) == ("TCP", CONFIG, CONFIG)
    assert method.config_path(CONFIG).is_file()
    assert method.kit_depth_keys == ("TRAINER.TCP.TKE_BLOCK",)
    assert TCP.CFG_NODE == "TCP"


@pytest.mark.slow
def test_base2new_scripts_end_to_end(kit, tmp_path):
    base, new = run_base2new_scripts(kit, tmp_path, "tcp", "TCP", CONFIG)
    assert "loss_kg" in base and "W = 8.0" in base and "before text block 3" in new
