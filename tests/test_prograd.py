"""ProGrad: gradient projection and distillation loss against hand computations, template-phrase
context, the trainer's update, frozen CLIP, upstream checkpoints and keys, scripts on the tiny kit."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import make_trainer
from test_baselines import one_batch, write_upstream_checkpoint
from test_modern_baselines import run_base2new_scripts
from trainers.prograd import distillation_loss, project_conflicting, template_context

CONFIG = "vit_b16"


@pytest.fixture(scope="module")
def trainer(kit, tmp_path_factory):
    return make_trainer(kit, tmp_path_factory.mktemp("prograd"), "ProGrad", CONFIG)


# ---- projection and loss ------------------------------------------------------------------------
def test_a_conflicting_gradient_loses_its_component_along_the_kd_gradient():
    g_ce, g_kd = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])   # ⟨g_ce, g_kd⟩ = -1
    projected = project_conflicting(g_ce, g_kd)
    torch.testing.assert_close(projected, torch.tensor([0.5, 0.5]))   # g_ce + (1/2)·g_kd
    assert torch.dot(projected, g_kd).item() == pytest.approx(0.0, abs=1e-7)
    torch.testing.assert_close(project_conflicting(g_ce, g_kd, 0.5), torch.tensor([0.75, 0.25]))


def test_an_agreeing_or_orthogonal_gradient_is_unchanged():
    g_ce = torch.tensor([1.0, 2.0])
    assert torch.equal(project_conflicting(g_ce, torch.tensor([1.0, 1.0])), g_ce)
    assert torch.equal(project_conflicting(g_ce, torch.tensor([2.0, -1.0])), g_ce)  # ⟨·,·⟩ = 0


def test_projection_of_random_tensors_is_orthogonal_to_the_kd_gradient():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        g_ce, g_kd = (torch.randn(16, 64, generator=generator) for _ in range(2))
        projected = project_conflicting(g_ce, g_kd)
        if torch.sum(g_ce * g_kd) < 0:
            scale = g_ce.norm() * g_kd.norm()
            assert abs(torch.sum(projected * g_kd).item()) < 1e-5 * scale.item()
        else:
            assert torch.equal(projected, g_ce)


def test_distillation_loss_is_soft_cross_entropy_times_tau_squared():
    student = torch.tensor([[0.0, math.log(2.0)]])
    teacher = torch.zeros(1, 2)   # uniform target
    # τ = 1: -(½ log ⅓ + ½ log ⅔) = ½ log 4.5
    assert distillation_loss(student, teacher, 1.0).item() == pytest.approx(0.5 * math.log(4.5), rel=1e-6)
    # τ = 2: p = softmax([0, ½ log 2]) = [1, √2] / (1 + √2); loss = -(½ log p0 + ½ log p1)·4
    p0, p1 = 1 / (1 + math.sqrt(2)), math.sqrt(2) / (1 + math.sqrt(2))
    assert distillation_loss(student, teacher, 2.0).item() == pytest.approx(-2 * math.log(p0 * p1), rel=1e-6)


# ---- the model ----------------------------------------------------------------------------------
def test_context_ends_with_the_template_phrase_and_a_comma_pushes_the_last_word_out(trainer):
    backbone, learner = trainer.backbone, trainer.model.learnable
    assert trainer.model.teacher.template == "a type of pet, a photo of a {}."
    phrase = backbone.embed_tokens(backbone.tokenize(["a type of pet, a photo of a"]))[0]   # [T, D]
    ctx = learner.ctx.detach()
    assert ctx.shape == (16, backbone.text_width)
    assert torch.equal(ctx[:8], torch.zeros(8, backbone.text_width))
    torch.testing.assert_close(ctx[8:], phrase[1:9].float())     # "a type of pet , a photo of"
    torch.testing.assert_close(learner.token_suffix[:, 0], phrase[9].expand(5, -1))   # "a" stays text
    # The prompt text the buffers come from: 8 "X" then the phrase, the class name and ".".
    assert learner.token_suffix.shape == (5, 77 - 1 - 16, backbone.text_width)


def test_a_phrase_longer_than_the_context_is_explained(trainer):
    with pytest.raises(ValueError, match=r"N_CTX is 4.*8 words"):
        template_context(trainer.backbone, 4, "a type of pet, a photo of a {}.")
    ctx, prefix = template_context(trainer.backbone, 4, "a photo of a {}.")
    assert prefix == "a photo of a" and not torch.equal(ctx[0], torch.zeros_like(ctx[0]))


def test_the_update_uses_the_projected_cross_entropy_gradient(kit, tmp_path):
    trainer = make_trainer(kit, tmp_path, "ProGrad", CONFIG)
    model, ctx = trainer.model, trainer.model.learnable.ctx
    image, label = trainer.parse_batch_train(one_batch(trainer))
    trainer.set_model_mode("train")
    output = model(image)
    logits, teacher_logits = output.logits, output.teacher_logits
    g_ce, = torch.autograd.grad(F.cross_entropy(logits, label), ctx, retain_graph=True)
    g_kd, = torch.autograd.grad(distillation_loss(logits, teacher_logits, 1.0), ctx)
    clip_before = {k: v.clone() for k, v in trainer.backbone.state_dict().items()}
    before = ctx.detach().clone()
    trainer.batch_idx, trainer.num_batches = 0, 2
    summary = trainer.forward_backward({"img": image, "label": label})
    torch.testing.assert_close(ctx.grad, project_conflicting(g_ce, g_kd), rtol=1e-4, atol=1e-7)
    assert torch.sum(ctx.grad * g_kd).item() >= -1e-5 * (ctx.grad.norm() * g_kd.norm()).item()
    assert not torch.equal(ctx.detach(), before) and summary["loss_kd"] > 0
    assert [n for n, _ in model.learnable.named_parameters()] == ["ctx"]
    assert all(torch.equal(v, clip_before[k]) for k, v in trainer.backbone.state_dict().items())
    assert all(p.grad is None for p in trainer.backbone.parameters())


@pytest.mark.parametrize("name, ok", [("prograd", True), ("", True), ("kd", False)])
def test_loss_name_must_be_prograd(kit, tmp_path, name, ok):
    opts = ("LOSS.NAME", name)
    if ok:
        assert make_trainer(kit, tmp_path, "ProGrad", CONFIG, *opts).strength == 1.0
    else:
        with pytest.raises(ValueError, match="LOSS.NAME must be 'prograd'"):
            make_trainer(kit, tmp_path, "ProGrad", CONFIG, *opts)


# ---- checkpoints --------------------------------------------------------------------------------
def test_checkpoint_has_upstream_name_and_keys_and_upstream_files_load(trainer, tmp_path):
    trainer.save_model(0, str(tmp_path / "ours"))
    saved = torch.load(tmp_path / "ours" / "prompt_learner" / "model.pth.tar-1", weights_only=True)
    assert {k: tuple(v.shape) for k, v in saved["state_dict"].items()} == {
        "ctx": (16, 64), "token_prefix": (5, 1, 64), "token_suffix": (5, 60, 64)}
    upstream = {"ctx": torch.randn(16, 64, generator=torch.Generator().manual_seed(0)).half(),
                "token_prefix": torch.zeros(3, 1, 64).half(), "token_suffix": torch.zeros(3, 60, 64).half()}
    write_upstream_checkpoint(tmp_path / "upstream", "prompt_learner", 200, upstream)
    learner = trainer.model.learnable
    prefix = learner.token_prefix.clone()
    trainer.load_model(str(tmp_path / "upstream"), 200)
    torch.testing.assert_close(learner.ctx.detach(), upstream["ctx"].float())
    assert torch.equal(learner.token_prefix, prefix)


# ---- scripts ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_base2new_scripts_end_to_end(kit, tmp_path):
    base, _ = run_base2new_scripts(kit, tmp_path, "prograd", "ProGrad", CONFIG)
    assert "loss_kd" in base
