"""KgCoOp: "a photo of a" context, the knowledge-guidance term and its weight, frozen CLIP, upstream
checkpoints and config keys, scripts end to end on the tiny kit."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import build_cfg, make_trainer
from test_baselines import one_batch, write_upstream_checkpoint
from test_modern_baselines import run_base2new_scripts
from trainers.kgcoop import INIT_PHRASE, KgCoOp
from trainers.losses import KnowledgeGuidedLoss, knowledge_guidance_loss
from trainers.teachers import GuidedOutput, ZeroShotClassifier

CONFIG = "vit_b16_ep100_ctxv1"


@pytest.fixture(scope="module")
def trainer(kit, tmp_path_factory):
    return make_trainer(kit, tmp_path_factory.mktemp("kgcoop"), "KgCoOp", CONFIG)


# ---- the loss -----------------------------------------------------------------------------------
def test_knowledge_guidance_is_one_minus_the_mean_cosine():
    learned = torch.tensor([[1.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    clip = torch.tensor([[0.0, 2.0], [0.0, 1.0], [1.0, 0.0]])
    # cosines 0, 1 and 1/sqrt(2): 1 - (0 + 1 + 0.7071) / 3
    expected = 1.0 - (0.0 + 1.0 + 2 ** -0.5) / 3
    assert knowledge_guidance_loss(learned, clip).item() == pytest.approx(expected, rel=1e-6)
    assert knowledge_guidance_loss(clip, clip).item() == pytest.approx(0.0, abs=1e-6)


def test_loss_adds_w_times_the_guidance_term_to_cross_entropy():
    logits, labels = torch.tensor([[2.0, 0.0], [0.0, 0.0]]), torch.tensor([0, 1])
    learned, clip = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    output = GuidedOutput(logits, text_features=learned, teacher_text_features=clip)
    loss, terms = KnowledgeGuidedLoss(8.0)(output, labels)
    ce = (math.log(1 + math.exp(-2.0)) + math.log(2.0)) / 2
    assert terms["loss_ce"].item() == pytest.approx(ce, rel=1e-6)
    assert terms["loss_kg"].item() == pytest.approx(0.5, rel=1e-6)   # cosines 0 and 1
    assert loss.item() == pytest.approx(ce + 8.0 * 0.5, rel=1e-6)


def test_step_loss_is_cross_entropy_plus_w_times_the_guidance_term(trainer):
    assert trainer.options.W == 8.0  # the recipe's weight, from the config
    model = trainer.model
    image, label = trainer.parse_batch_train(one_batch(trainer))
    trainer.set_model_mode("train")  # the teacher's features are part of a training step's output
    loss, summary = trainer.compute_loss({"img": image, "label": label})
    with torch.no_grad():
        text, teacher = model.text_features(), model.teacher.features()
        logits = 100.0 * model.visual_embedding(image) @ text.t()
        ce = F.cross_entropy(logits, label)
        kg = 1.0 - (F.normalize(text, dim=-1) * F.normalize(teacher, dim=-1)).sum(-1).mean()
    torch.testing.assert_close(summary["loss_ce"], ce.item(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(summary["loss_kg"], kg.item(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(loss.item(), ce.item() + 8.0 * kg.item(), rtol=1e-5, atol=1e-5)
    assert kg.item() > 1e-4  # OxfordPets' teacher ("..., a type of pet.") is not the student's prompt


def test_teacher_is_the_dataset_template_and_matches_the_initial_prompts_when_they_agree(trainer):
    model = trainer.model
    assert model.teacher.template == "a photo of a {}, a type of pet."
    # With the generic template the teacher reads exactly the student's initial prompts: penalty 0.
    generic = ZeroShotClassifier(trainer.backbone, trainer.dm.dataset.classnames, "a photo of a {}.")
    with torch.no_grad():
        penalty = knowledge_guidance_loss(model.text_features(), generic.features())
    assert penalty.item() == pytest.approx(0.0, abs=1e-5)


# ---- the model ----------------------------------------------------------------------------------
def test_context_is_a_photo_of_a_whatever_ctx_init_says(kit, tmp_path, trainer):
    backbone = trainer.backbone
    phrase = backbone.embed_tokens(backbone.tokenize([INIT_PHRASE]))[0, 1:5]
    learner = trainer.model.learnable
    assert learner.ctx.shape == (4, backbone.text_width) and learner.ctx.dtype == torch.float32
    torch.testing.assert_close(learner.ctx.detach(), phrase.float())
    other = make_trainer(kit, tmp_path, "KgCoOp", CONFIG, "TRAINER.COOP.CTX_INIT", "a drawing of the thing",
                         "TRAINER.COOP.N_CTX", "8")
    torch.testing.assert_close(other.model.learnable.ctx.detach(), phrase.float())
    random = make_trainer(kit, tmp_path / "r", "KgCoOp", CONFIG, "TRAINER.COOP.CTX_INIT", "", "TRAINER.COOP.N_CTX", "6")
    assert random.model.learnable.ctx.shape == (6, backbone.text_width)
    assert random.model.learnable.ctx.std().item() == pytest.approx(0.02, rel=0.3)


def test_a_class_token_position_other_than_end_is_refused(kit, tmp_path):
    with pytest.raises(ValueError, match=r"TRAINER\.COOP\.CLASS_TOKEN_POSITION must be one of \('end',\)"):
        make_trainer(kit, tmp_path, "KgCoOp", CONFIG, "TRAINER.COOP.CLASS_TOKEN_POSITION", "front")


def test_only_the_context_learns_and_clip_stays_frozen(kit, tmp_path):
    trainer = make_trainer(kit, tmp_path, "KgCoOp", CONFIG)
    clip_before = {k: v.clone() for k, v in trainer.backbone.state_dict().items()}
    ctx_before = trainer.model.learnable.ctx.detach().clone()
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 2
    trainer.forward_backward(one_batch(trainer))
    assert [n for n, p in trainer.model.learnable.named_parameters()] == ["ctx"]
    assert not torch.equal(trainer.model.learnable.ctx, ctx_before)
    assert all(torch.equal(v, clip_before[k]) for k, v in trainer.backbone.state_dict().items())
    assert all(p.grad is None for p in trainer.backbone.parameters())


def test_upstream_key_w_is_read_and_defaults_to_one_without_it(kit, tmp_path):
    cfg = build_cfg(kit, tmp_path, "KgCoOp", CONFIG, "TRAINER.COOP.W", "2.5")
    assert KgCoOp.method_options(cfg).W == 2.5
    cfg.defrost()
    del cfg.TRAINER.COOP["W"]  # an upstream CoOp client's node
    assert KgCoOp.method_options(cfg).W == 1.0


# ---- checkpoints --------------------------------------------------------------------------------
def test_checkpoint_has_upstream_name_and_keys(trainer, tmp_path):
    trainer.save_model(0, str(tmp_path))
    saved = torch.load(tmp_path / "prompt_learner" / "model.pth.tar-1", weights_only=True)
    assert {k: tuple(v.shape) for k, v in saved["state_dict"].items()} == {
        "ctx": (4, 64), "token_prefix": (5, 1, 64), "token_suffix": (5, 72, 64)}
    assert saved["epoch"] == 1


def test_upstream_checkpoint_loads_its_context_and_ignores_the_dead_members(trainer, tmp_path):
    """An upstream file (fp16, 3 other classes, untrained ``bias_vectors`` and ``meta_net``)."""
    generator = torch.Generator().manual_seed(0)
    state = {"ctx": torch.randn(4, 64, generator=generator).half(),
             "bias_vectors": torch.randn(1, 64, generator=generator).half(),
             "meta_net.linear1.weight": torch.randn(64, 64, generator=generator).half(),
             "meta_net.linear1.bias": torch.randn(64, generator=generator).half(),
             "token_prefix": torch.zeros(3, 1, 64).half(), "token_suffix": torch.zeros(3, 72, 64).half()}
    write_upstream_checkpoint(tmp_path, "prompt_learner", 100, state)
    learner = trainer.model.learnable
    suffix = learner.token_suffix.clone()
    trainer.load_model(str(tmp_path), 100)
    assert learner.ctx.dtype == torch.float32
    torch.testing.assert_close(learner.ctx.detach(), state["ctx"].float())
    assert torch.equal(learner.token_suffix, suffix)  # this run's classes are kept


# ---- scripts ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_base2new_scripts_end_to_end(kit, tmp_path):
    base, _ = run_base2new_scripts(kit, tmp_path, "kgcoop", "KgCoOp", CONFIG)
    assert "loss_kg" in base and "W = 8.0" in base
