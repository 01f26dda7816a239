"""PromptSRC: shapes, frozen CLIP and teachers, each loss term by hand, GPA weights and aggregation,
upstream checkpoint keys, resume of the GPA sum, and an end-to-end run through train.py."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import REPO, accuracies, make_trainer, run_train
from tools.kit.build import TINY_LAYERS
from trainers.promptsrc import GPA_MODEL_NAME, RegulatedOutput, SelfRegulatingLoss, gpa_weights
from trainers.templates import PROMPTSRC_TEMPLATES

B2N = "vit_b16_c2_ep20_batch4_4+4ctx"
CONFIGS = REPO / "configs" / "trainers" / "PromptSRC"
# The tiny CLIP has TINY_LAYERS blocks (the paper configs prompt 9 deep).
DEPTHS = ["TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", str(TINY_LAYERS),
          "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", str(TINY_LAYERS)]
# Upstream's learnable key families on the tiny kit (D_t = D_v = 64, 5 classes, n = 4 tokens).
UPSTREAM_KEYS = {"prompt_learner.ctx": (4, 64), "prompt_learner.token_prefix": (5, 1, 64),
                 "prompt_learner.token_suffix": (5, 72, 64), "image_encoder.VPT": (4, 64),
                 **{f"{tower}_encoder.transformer.resblocks.{j}.VPT_shallow": (4, 64)
                    for tower in ("image", "text") for j in range(1, TINY_LAYERS)}}


def build(kit, path: Path, *opts: str, config: str = B2N):
    return make_trainer(kit, path, "PromptSRC", config, *DEPTHS, *opts)


@pytest.fixture(scope="module")
def trainer(kit, tmp_path_factory):
    return build(kit, tmp_path_factory.mktemp("promptsrc"))


def one_batch(trainer):
    return next(iter(trainer.train_loader_x))


def learnable_params(trainer):
    return {k: v.detach().clone() for k, v in trainer.model.learnable.named_parameters()}


# ---- configs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("config, depth, epochs, mean, std", [
    ("vit_b16_c2_ep20_batch4_4+4ctx", 9, 20, 15, 1),
    ("vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets", 3, 20, 6, 10),
    ("vit_b16_c2_ep50_batch4_4+4ctx_few_shot", 9, 50, 30, 30),
    ("vit_b16_c2_ep50_batch4_4+4ctx_few_shot_gpa45", 9, 50, 45, 5),
])
def test_shipped_configs_have_upstreams_hyper_parameters(kit, tmp_path, config, depth, epochs, mean, std):
    from conftest import build_cfg

    cfg = build_cfg(kit, tmp_path, "PromptSRC", config)
    node = cfg.TRAINER.PROMPTSRC
    assert (cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == (0.0025, epochs, 4)
    assert (node.N_CTX_TEXT, node.N_CTX_VISION, node.CTX_INIT, node.PREC) == (4, 4, "a photo of a", "fp16")
    assert (node.TEXT_LOSS_WEIGHT, node.IMAGE_LOSS_WEIGHT, node.GPA_MEAN, node.GPA_STD) == (25, 10, mean, std)
    text = (CONFIGS / f"{config}.yaml").read_text()  # the depths (the kit's options fit them to its CLIP)
    assert f"PROMPT_DEPTH_VISION: {depth}\n" in text and f"PROMPT_DEPTH_TEXT: {depth}\n" in text


# ---- model ------------------------------------------------------------------------------------
def test_shapes_of_the_student_and_teacher_outputs(trainer):
    image, _ = trainer.parse_batch_train(one_batch(trainer))
    trainer.set_model_mode("train")  # the teachers are part of a training step's output
    out = trainer.model(image)
    b, c, e = image.shape[0], 5, trainer.backbone.embed_dim
    assert out.logits.shape == out.zs_logits.shape == (b, c)
    assert out.image_features.shape == out.zs_image_features.shape == (b, e)
    assert out.text_features.shape == out.zs_text_features.shape == (c, e)
    for features in (out.image_features, out.text_features, out.zs_image_features, out.zs_text_features):
        assert torch.allclose(features.norm(dim=-1), torch.ones(features.shape[0]), atol=1e-5)
    trainer.set_model_mode("eval")
    evaluated = trainer.model(image)
    assert evaluated.zs_logits is None and evaluated.zs_text_features is None  # no teacher in evaluation
    assert torch.allclose(evaluated.logits, out.logits, atol=1e-4 * out.logits.abs().max().item())
    trainer.set_model_mode("train")


def test_the_prompted_model_is_ivlps_with_the_same_seed(kit, tmp_path):
    """Spec §2.1: PromptSRC's architecture is IVLP's (the PromptSRC repository's 4+4 IVLP config)."""
    ivlp = make_trainer(kit, tmp_path, "IVLP", "vit_b16_c2_ep20_batch4_4+4ctx", "TRAINER.IVLP.PROMPT_DEPTH_TEXT",
                        str(TINY_LAYERS), "TRAINER.IVLP.PROMPT_DEPTH_VISION", str(TINY_LAYERS))
    fresh = build(kit, tmp_path / "fresh")
    ours, theirs = fresh.model.learnable.state_dict(), ivlp.model.learnable.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    image, _ = fresh.parse_batch_train(one_batch(fresh))
    assert torch.equal(fresh.model(image).logits, ivlp.model(image).logits)


def test_text_teacher_is_the_normalised_mean_of_the_raw_features_of_60_templates(trainer):
    backbone = trainer.backbone
    names = [c.replace("_", " ") for c in trainer.dm.dataset.classnames]
    raw = torch.stack([backbone.encode_tokens(backbone.tokenize([t.replace("{}", n) for n in names]))
                       for t in PROMPTSRC_TEMPLATES])                        # [60, C, E], not normalised
    expected = F.normalize(raw.mean(0), dim=-1)
    got = trainer.model.zs_text_features()
    assert len(PROMPTSRC_TEMPLATES) == 60 and not got.requires_grad
    assert torch.allclose(got, expected, atol=1e-5)
    normalised_first = F.normalize(F.normalize(raw, dim=-1).mean(0), dim=-1)  # CLIP's ensembling: not this
    assert not torch.allclose(got, normalised_first, atol=1e-5)


def test_only_the_prompts_get_gradients_and_the_teachers_none(trainer):
    image, label = trainer.parse_batch_train(one_batch(trainer))
    trainer.model.learnable.zero_grad()
    trainer.set_model_mode("train")
    out = trainer.model(image)
    teachers = (out.zs_logits, out.zs_image_features, out.zs_text_features)
    assert not any(t.requires_grad for t in teachers)
    loss, _ = trainer.criterion(out, label)
    loss.backward()
    assert all(not p.requires_grad and p.grad is None for p in trainer.backbone.parameters())
    grads = {k: p.grad for k, p in trainer.model.learnable.named_parameters()}
    assert set(grads) == {k for k in UPSTREAM_KEYS if "token_" not in k}
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values())
    trainer.model.learnable.zero_grad()


# ---- losses -----------------------------------------------------------------------------------
def test_each_loss_term_equals_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    b, c, e = 3, 4, 5
    unit = lambda *shape: F.normalize(torch.randn(*shape, generator=g), dim=-1)  # noqa: E731
    v, v_zs, t, t_zs = unit(b, e), unit(b, e), unit(c, e), unit(c, e)
    s, s_zs = 100 * v @ t.t(), 100 * v_zs @ t_zs.t()
    label = torch.tensor([0, 3, 1])
    out = RegulatedOutput(s, v, t, s_zs, v_zs, t_zs)
    loss, terms = SelfRegulatingLoss(25, 10)(out, label)

    ce = -sum(math.log(math.exp(s[i, label[i]]) / sum(math.exp(x) for x in s[i])) for i in range(b)) / b
    l1_text = 25 * sum(abs(t[i, k] - t_zs[i, k]) for i in range(c) for k in range(e)) / (c * e)
    l1_image = 10 * sum(abs(v[i, k] - v_zs[i, k]) for i in range(b) for k in range(e)) / (b * e)
    p, p_zs = s.double().softmax(-1), s_zs.double().softmax(-1)
    kl = sum(p_zs[i, j] * (math.log(p_zs[i, j]) - math.log(p[i, j])) for i in range(b) for j in range(c)) / (b * c)
    for name, expected in [("loss_ce", ce), ("loss_text", l1_text), ("loss_image", l1_image), ("loss_logits", kl)]:
        assert math.isclose(terms[name].item(), float(expected), rel_tol=1e-5, abs_tol=1e-6), name
    assert math.isclose(loss.item(), float(ce + l1_text + l1_image + kl), rel_tol=1e-5)
    # the KL is divided by B·C, not by B ("batchmean")
    assert not math.isclose(terms["loss_logits"].item(), float(kl * c), rel_tol=1e-3)


# ---- GPA --------------------------------------------------------------------------------------
def test_gpa_weights_are_a_normalised_gaussian_over_epochs():
    w = gpa_weights(20, 15, 1)
    hand = [math.exp(-(a - 15) ** 2 / 2) for a in range(1, 21)]
    assert torch.allclose(w, torch.tensor(hand, dtype=torch.float64) / sum(hand), rtol=1e-12)
    assert math.isclose(w.sum().item(), 1.0, rel_tol=1e-12)
    # the weights of PromptSRC's paper (Gaussian, μ = 15, σ = 1)
    assert [round(w[a - 1].item(), 4) for a in (12, 13, 14, 15, 16, 17, 18)] == [.0044, .0540, .2420, .3989, .2420,
                                                                                   .0540, .0044]
    xd = gpa_weights(20, 6, 10)
    assert (round(xd[0].item(), 4), round(xd[5].item(), 4), round(xd[19].item(), 4)) == (.0554, .0628, .0236)
    assert round(1 / (gpa_weights(50, 45, 5) ** 2).sum().item(), 1) == 14.1
    short = gpa_weights(1, 45, 1)  # one epoch far from μ (a quick run of a long config): all weight on it
    assert short.tolist() == [1.0]
    with pytest.raises(ValueError, match="GPA_STD"):
        gpa_weights(20, 15, 0)


def run_recording_epochs(trainer):
    """Train; return θ_a as it stands when epoch a's last step has stepped optimizer and scheduler."""
    per_epoch = []
    update_lr = trainer.update_lr

    def record(*args, **kwargs):
        update_lr(*args, **kwargs)
        per_epoch.append(learnable_params(trainer))

    trainer.update_lr = record
    trainer.train()
    return per_epoch


def test_gpa_prompts_are_the_weighted_sum_of_the_per_epoch_prompts(kit, tmp_path):
    epochs = 3
    trainer = build(kit, tmp_path, "OPTIM.MAX_EPOCH", str(epochs), "OPTIM.WARMUP_EPOCH", "0", "OPTIM.LR", "0.05",
                    "TRAINER.PROMPTSRC.GPA_MEAN", "2", "TRAINER.PROMPTSRC.GPA_STD", "1", "TEST.NO_TEST", "True",
                    "DATASET.NUM_SHOTS", "2")  # 2 steps per epoch
    per_epoch = run_recording_epochs(trainer)
    assert len(per_epoch) == epochs
    w = [math.exp(-(a - 2) ** 2 / 2) for a in range(1, epochs + 1)]
    w = [x / sum(w) for x in w]
    final = learnable_params(trainer)
    saved = torch.load(tmp_path / "VLPromptLearner" / f"model.pth.tar-{epochs}", weights_only=True)["state_dict"]
    for key, value in final.items():
        expected = sum(w[a] * per_epoch[a][key] for a in range(epochs))
        assert torch.allclose(value, expected, atol=1e-6 * expected.abs().max().item() + 1e-7), key
        assert not torch.equal(value, per_epoch[-1][key]), key  # the last epoch's raw prompts were replaced
        assert torch.equal(saved[key], value), key               # and the checkpoint holds the aggregate


# ---- checkpoints ------------------------------------------------------------------------------
def test_checkpoint_has_upstream_keys_and_round_trips(trainer, kit, tmp_path):
    with torch.no_grad():
        for p in trainer.model.learnable.parameters():
            p.add_(0.1)  # as if trained
    trainer.save_model(19, str(tmp_path))
    checkpoint = torch.load(tmp_path / "VLPromptLearner" / "model.pth.tar-20", weights_only=True)
    assert {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()} == UPSTREAM_KEYS
    assert checkpoint["epoch"] == 20
    gpa = torch.load(tmp_path / GPA_MODEL_NAME / "model.pth.tar-20", weights_only=True)["state_dict"]
    assert "epochs_done" in gpa and len([k for k in gpa if k.startswith("sum_")]) == 2 + 2 * (TINY_LAYERS - 1)

    other = build(kit, tmp_path / "other")
    before = learnable_params(other)
    other.load_model(str(tmp_path), 20)
    loaded = learnable_params(other)
    assert any(not torch.equal(before[k], loaded[k]) for k in before)
    assert all(torch.equal(loaded[k], v.detach()) for k, v in trainer.model.learnable.named_parameters())


def test_an_upstream_whole_model_checkpoint_loads_its_prompts_only(trainer, tmp_path):
    """Upstream registers the whole CustomCLIP (frozen towers, the ZS image tower, 3 base classes'
    buffers) and writes no GPA folder: the prompts load, the rest is ignored."""
    generator = torch.Generator().manual_seed(3)
    state = {k: torch.randn(shape, generator=generator) for k, shape in UPSTREAM_KEYS.items()}
    for key in ("prompt_learner.token_prefix", "prompt_learner.token_suffix"):
        state[key] = state[key][:3]
    state.update({"prompt_learner.ZS_image_encoder.conv1.weight": torch.zeros(64, 3, 8, 8),
                  "image_encoder.conv1.weight": torch.zeros(64, 3, 8, 8), "logit_scale": torch.tensor(4.6),
                  "text_encoder.positional_embedding": torch.zeros(77, 64)})
    folder = tmp_path / "VLPromptLearner"
    folder.mkdir()
    torch.save({"state_dict": state, "epoch": 20, "optimizer": None, "scheduler": None}, folder / "model.pth.tar-20")
    buffers = {k: v.clone() for k, v in trainer.model.learnable.state_dict().items() if "token_" in k}
    trainer.load_model(str(tmp_path), 20)
    loaded = trainer.model.learnable.state_dict()
    for key in UPSTREAM_KEYS:
        expected = buffers[key] if key in buffers else state[key]
        assert torch.equal(loaded[key], expected), key
    assert not torch.equal(trainer.backbone.clip.visual.conv1.weight, torch.zeros(64, 3, 8, 8))


@pytest.mark.slow
def test_resume_after_an_epoch_restores_the_gpa_sum(kit, tmp_path):
    opts = ["OPTIM.MAX_EPOCH", "3", "OPTIM.WARMUP_EPOCH", "0", "OPTIM.LR", "0.05", "TRAIN.CHECKPOINT_FREQ", "1",
            "TRAINER.PROMPTSRC.GPA_MEAN", "2", "TRAINER.PROMPTSRC.GPA_STD", "1", "TEST.NO_TEST", "True",
            "DATASET.NUM_SHOTS", "2"]
    full = build(kit, tmp_path / "full", *opts)
    full.train()
    resumed_dir = tmp_path / "resumed"
    for name in ("VLPromptLearner", GPA_MODEL_NAME):  # the run as it stood after its first epoch
        (resumed_dir / name).mkdir(parents=True)
        shutil.copy(tmp_path / "full" / name / "model.pth.tar-1", resumed_dir / name)
        (resumed_dir / name / "checkpoint").write_text("model.pth.tar-1\n")
    resumed = build(kit, resumed_dir, *opts)
    resumed.train()
    assert int(resumed.gpa.epochs_done) == 3
    for key, value in learnable_params(full).items():
        assert torch.equal(learnable_params(resumed)[key], value), key


@pytest.mark.slow
def test_base_to_new_end_to_end_through_train_py(kit, tmp_path):
    """The shipped base-to-new config, trained on the base classes and evaluated on the new ones."""
    flags = ["--root", str(kit.data), "--seed", "1", "--trainer", "PromptSRC",
             "--dataset-config-file", str(REPO / "configs/datasets/oxford_pets.yaml"),
             "--config-file", str(CONFIGS / f"{B2N}.yaml")]
    opts = [*kit.opts(), *DEPTHS, "DATASET.NUM_SHOTS", "16", "OPTIM.MAX_EPOCH", "2", "TRAINER.PROMPTSRC.GPA_MEAN", "2"]
    train_dir, test_dir = tmp_path / "train_base", tmp_path / "test_new"
    base = run_train(*flags, "--output-dir", str(train_dir), *opts, "DATASET.SUBSAMPLE_CLASSES", "base").stdout
    assert "Finish training" in base and len(accuracies(base)) == 1
    for term in ("loss_ce", "loss_text", "loss_image", "loss_logits"):
        assert term in base
    state = torch.load(train_dir / "VLPromptLearner" / "model.pth.tar-2", weights_only=True)["state_dict"]
    assert state["prompt_learner.token_prefix"].shape[0] == 3 and "image_encoder.VPT" in state
    new = run_train(*flags, "--output-dir", str(test_dir), "--eval-only", "--model-dir", str(train_dir),
                    "--load-epoch", "2", *opts, "DATASET.SUBSAMPLE_CLASSES", "new").stdout
    assert "# classes  2" in new and len(accuracies(new)) == 1
