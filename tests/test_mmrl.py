"""MMRL: representation tokens inserted in the upper blocks of both towers (against CLIP's own
blocks with an explicit mask), the loss by hand, decoupled inference, upstream's per-dataset
options, upstream checkpoints (also through ``train.py --eval-only --model-dir``), the registry and
the scripts end to end on the tiny kit."""
from __future__ import annotations

import math

import pytest
import torch
import yaml
import torch.nn.functional as F

from conftest import build_cfg, make_trainer
from numerics import assert_close, assert_differs
from test_baselines import one_batch, write_upstream_checkpoint
from test_modern_baselines import evaluate_upstream_checkpoint, parameters_a_step_changes, run_base2new_scripts
from runs.methods import METHODS
from trainers.mmrl import MMRL, RepresentationLoss, RepresentationOutput, fuses_at_test

CONFIG = "vit_b16"
NAME = "MultiModalRepresentationLearner"
# Upstream's learnable keys on the tiny CLIP (D_v = D_t = 64, E = 32), K = 5, d_r = 512, blocks [2, 3].
UPSTREAM_SHAPES = {"representation_learner.compound_rep_tokens": (5, 512), "image_encoder.proj_rep": (64, 32),
                   **{f"representation_learner.compound_rep_tokens_r2{t}proj.{i}.{p}": (64, 512) if p == "weight" else (64,)
                      for t in "vt" for i in (0, 1) for p in ("weight", "bias")}}


@pytest.fixture(scope="module")
def trainer(kit, tmp_path_factory):
    return make_trainer(kit, tmp_path_factory.mktemp("mmrl"), "MMRL", CONFIG, "DATASET.SUBSAMPLE_CLASSES", "base")


# ---- the towers, by hand (CLIP's blocks, upstream's sequence-first layout and additive mask) -------
def clip_block(block, x: torch.Tensor, causal: bool) -> torch.Tensor:
    """CLIP's ResidualAttentionBlock on [L, N, D] with a mask of the current length."""
    mask = torch.full((x.shape[0], x.shape[0]), float("-inf")).triu(1) if causal else None
    x = x + block.attn(block.ln_1(x), block.ln_1(x), block.ln_1(x), need_weights=False, attn_mask=mask)[0]
    return x + block.mlp(block.ln_2(x))


def run_with_tokens(blocks, x: torch.Tensor, tokens: dict, causal: bool) -> torch.Tensor:
    """Upstream's rule on [L, N, D]: insert after token 0 at the first listed block, overwrite 1..K later."""
    first = min(tokens)
    for index, block in enumerate(blocks):
        if index in tokens:
            t = tokens[index].unsqueeze(1).expand(-1, x.shape[1], -1)
            x = torch.cat([x[:1], t, x[1 if index == first else 1 + t.shape[0]:]])
        x = clip_block(block, x, causal)
    return x


def features_by_hand(model, image: torch.Tensor):
    """(t̂ [C, E], v̂ [B, E], v̂_rep [B, E]) with the 77-token text input and CLIP's own blocks."""
    clip = model.backbone.clip
    text_tokens, vision_tokens = model.learnable.representation_learner.layer_tokens()
    k = model.learnable.representation_learner.compound_rep_tokens.shape[0]
    x = (model.prompt_embeddings + clip.positional_embedding).permute(1, 0, 2)
    x = clip.ln_final(run_with_tokens(clip.transformer.resblocks, x, text_tokens, causal=True).permute(1, 0, 2))
    text = x[torch.arange(x.shape[0]), model.eot + k] @ clip.text_projection
    visual = clip.visual
    x = visual.conv1(image).flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + visual.positional_embedding
    x = run_with_tokens(visual.transformer.resblocks, visual.ln_pre(x).permute(1, 0, 2), vision_tokens, causal=False)
    x = x.permute(1, 0, 2)
    cls = visual.ln_post(x[:, 0]) @ visual.proj
    rep = visual.ln_post(x[:, 1:1 + k]).mean(1) @ model.learnable.image_encoder.proj_rep
    return F.normalize(text, dim=-1), F.normalize(cls, dim=-1), F.normalize(rep, dim=-1)


def test_representation_tokens_enter_both_towers_as_upstream(trainer):
    model = trainer.model
    image, _ = trainer.parse_batch_train(one_batch(trainer))
    trainer.set_model_mode("eval")
    with torch.no_grad():
        out = model(image)
        text, cls, rep = features_by_hand(model, image)
        plain = model.teacher.features()
    assert_close(out.text_features, text, what="MMRL text features vs CLIP's blocks by hand")
    assert_close(out.image_features, cls, what="MMRL class-token features vs by hand")
    assert_close(out.rep_logits, 100.0 * rep @ text.t(), what="MMRL representation logits vs by hand", scale=100.0)
    assert_differs(out.text_features, plain, what="representation tokens change the text features")


# ---- the loss -------------------------------------------------------------------------------------
def test_loss_weighs_both_cross_entropies_by_alpha_and_adds_both_regularisers():
    out = RepresentationOutput(logits=torch.zeros(2, 2), class_logits=torch.tensor([[2.0, 0.0], [0.0, 0.0]]),
                               rep_logits=torch.tensor([[0.0, 0.0], [0.0, 2.0]]),
                               image_features=torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
                               zs_image_features=torch.tensor([[1.0, 0.0], [1.0, 0.0]]),   # cosines 1, 0
                               text_features=torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
                               zs_text_features=torch.tensor([[0.0, 1.0], [0.0, 1.0]]))   # cosines 0, 1
    loss, terms = RepresentationLoss(alpha=0.7, reg_weight=2.0)(out, torch.tensor([0, 1]))
    ce_class = (math.log(1 + math.exp(-2.0)) + math.log(2.0)) / 2   # sample 0 right by 2, sample 1 a tie
    ce_rep = (math.log(2.0) + math.log(1 + math.exp(-2.0))) / 2
    expected = {"loss_ce": 0.7 * ce_class, "loss_ce_rep": 0.3 * ce_rep, "loss_reg_image": 2.0 * 0.5,
                "loss_reg_text": 2.0 * 0.5}
    for key, value in expected.items():
        assert terms[key].item() == pytest.approx(value, rel=1e-6), key
    assert loss.item() == pytest.approx(sum(expected.values()), rel=1e-6)


def test_step_loss_from_the_model_equals_the_formula_by_hand(trainer):
    model, options = trainer.model, trainer.options
    assert (options.ALPHA, options.REG_WEIGHT) == (0.7, 0.2)  # OxfordPets' weight from upstream's table
    image, label = trainer.parse_batch_train(one_batch(trainer))
    trainer.set_model_mode("train")
    loss, summary = trainer.compute_loss({"img": image, "label": label})
    with torch.no_grad():
        text, cls, rep = features_by_hand(model, image)
        zs_image, zs_text = model.frozen_embedding(image), model.teacher.features()
        expected = (0.7 * F.cross_entropy(100 * cls @ text.t(), label) + 0.3 * F.cross_entropy(100 * rep @ text.t(), label)
                    + 0.2 * (1 - (cls * zs_image).sum(-1).mean()) + 0.2 * (1 - (text * zs_text).sum(-1).mean()))
    assert_close(loss.detach(), expected, what="MMRL loss vs by hand", scale=max(1.0, expected.item()))
    assert summary["loss_reg_image"] > 0 and summary["loss_reg_text"] > 0


# ---- decoupled inference and options ----------------------------------------------------------------
def test_decoupled_inference_follows_upstreams_task_rule():
    assert fuses_at_test("B2N", "base", "OxfordPets") and not fuses_at_test("B2N", "new", "OxfordPets")
    assert not fuses_at_test("B2N", "all", "OxfordPets")
    assert fuses_at_test("FS", "all", "DescribableTextures")
    assert fuses_at_test("CD", "all", "ImageNet") and not fuses_at_test("CD", "all", "ImageNetV2")


def test_evaluation_scores_base_classes_fused_and_new_classes_with_the_class_token(kit, tmp_path, trainer):
    image, _ = trainer.parse_batch_train(one_batch(trainer))
    trainer.set_model_mode("eval")
    with torch.no_grad():
        out = trainer.model(image)
    assert torch.equal(out.logits, 0.7 * out.class_logits + 0.3 * out.rep_logits)
    new = make_trainer(kit, tmp_path, "MMRL", CONFIG, "DATASET.SUBSAMPLE_CLASSES", "new")
    new.set_model_mode("eval")
    with torch.no_grad():
        out = new.model(image)
    assert torch.equal(out.logits, out.class_logits)


def test_upstreams_per_dataset_options_apply_unless_switched_off(kit, tmp_path):
    cfg = build_cfg(kit, tmp_path, "MMRL", CONFIG)
    assert MMRL.method_options(cfg).REG_WEIGHT == 0.2
    cfg.defrost()
    cfg.DATASET.NAME = "EuroSAT"
    assert (MMRL.method_options(cfg).REG_WEIGHT, MMRL.method_options(cfg).REP_DIM) == (0.01, 2048)
    cfg.TRAINER.MMRL.DATASET_OPTIONS = False
    assert (MMRL.method_options(cfg).REG_WEIGHT, MMRL.method_options(cfg).REP_DIM) == (1.0, 512)
    xd = build_cfg(kit, tmp_path, "MMRL", "vit_b16_cross_datasets")
    assert (MMRL.method_options(xd).TASK, MMRL.method_options(xd).REG_WEIGHT) == ("CD", 0.2)


def test_bad_representation_layers_and_task_are_refused(kit, tmp_path):
    with pytest.raises(ValueError, match=r"TRAINER\.MMRL\.REP_LAYERS=\[3, 2\] must be increasing block numbers in 1\.\.3"):
        make_trainer(kit, tmp_path / "a", "MMRL", CONFIG, "TRAINER.MMRL.REP_LAYERS", "[3,2]")
    with pytest.raises(ValueError, match=r"TRAINER\.MMRL\.TASK must be one of \('B2N', 'FS', 'CD'\)"):
        make_trainer(kit, tmp_path / "b", "MMRL", CONFIG, "TRAINER.MMRL.TASK", "XD")


def test_only_the_representation_learner_learns_and_clip_stays_frozen(kit, tmp_path):
    trainer = make_trainer(kit, tmp_path, "MMRL", CONFIG)
    assert parameters_a_step_changes(trainer) == sorted(UPSTREAM_SHAPES)
    assert type(trainer.optim).__name__ == "AdamW"


# ---- checkpoints ----------------------------------------------------------------------------------
def test_checkpoint_has_upstream_name_keys_and_shapes(trainer, tmp_path):
    trainer.save_model(0, str(tmp_path))
    saved = torch.load(tmp_path / NAME / "model.pth.tar-1", weights_only=True)
    assert {k: tuple(v.shape) for k, v in saved["state_dict"].items()} == UPSTREAM_SHAPES


def upstream_state() -> dict:
    """Upstream's whole-model file: the learnable tensors (fp16), frozen CLIP and the prompt embeddings."""
    generator = torch.Generator().manual_seed(0)
    state = {k: (0.05 * torch.randn(shape, generator=generator)).half() for k, shape in UPSTREAM_SHAPES.items()}
    state.update({"prompt_embeddings": torch.zeros(3, 77, 64).half(), "image_encoder.proj": torch.zeros(64, 32).half(),
                  "text_encoder.transformer.resblocks.0.attn.in_proj_weight": torch.zeros(192, 64).half()})
    return state


def test_upstream_checkpoint_loads_its_learnable_tensors(trainer, tmp_path):
    state = upstream_state()
    write_upstream_checkpoint(tmp_path, NAME, 10, state)
    clip_before = {k: v.clone() for k, v in trainer.backbone.state_dict().items()}
    trainer.load_model(str(tmp_path), 10)
    loaded = trainer.model.learnable.state_dict()
    assert all(torch.equal(loaded[k], state[k].float()) for k in UPSTREAM_SHAPES)
    assert all(torch.equal(v, clip_before[k]) for k, v in trainer.backbone.state_dict().items())


def test_upstream_checkpoint_evaluates_with_eval_only_and_model_dir(kit, tmp_path):
    log = evaluate_upstream_checkpoint(kit, tmp_path, "MMRL", CONFIG, NAME, 10, upstream_state())
    assert "evaluation scores with s (class token)" in log


# ---- registry and scripts -------------------------------------------------------------------------
def test_registry_entry_has_upstreams_configs():
    method = METHODS["mmrl"]
    assert (method.trainer, method.b2n_cfg, method.xd_cfg, method.fewshot_cfg) == (
        "MMRL", "vit_b16", "vit_b16_cross_datasets", "vit_b16_few_shot")
    assert method.cfg("b2n", "imagenet") == "vit_b16_imagenet"
    assert yaml.safe_load(method.config_path("vit_b16_imagenet").read_text())["OPTIM"]["MAX_EPOCH"] == 5
    for cfg in ("vit_b16", "vit_b16_imagenet", "vit_b16_cross_datasets", "vit_b16_few_shot"):
        assert method.config_path(cfg).is_file()


@pytest.mark.slow
def test_base2new_scripts_end_to_end(kit, tmp_path):
    base, new = run_base2new_scripts(kit, tmp_path, "mmrl", "MMRL", CONFIG, NAME)
    assert "loss_ce_rep" in base and "evaluation scores with s_fused" in base
    assert "evaluation scores with s (class token)" in new
