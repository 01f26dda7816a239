"""DePT as a plug-in (trainers/dept.py, trainers/plugins.py): its loss terms against hand arithmetic,
the composed model of six base methods against the base model plus the head computed by hand, new
classes unchanged, upstream's whole-model checkpoints, our own folders, run identity, bad input."""
from __future__ import annotations

import math
import re
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from conftest import (accuracies, build_cfg, copy_of_repository, follow_readme_guide, make_trainer, readme_guide,
                      run_base2new_steps, run_script)
from numerics import assert_close
from test_baselines import images, one_batch, write_upstream_checkpoint
from test_report import make_report, row_of
from runs.methods import METHODS, MODERN
from tools.experiments.report import Paper, Reported, regime
from runs.identity import settings_of
from trainers.dept import DecoupledHead, DePTLoss, linear_probe_loss
from trainers.losses import ClassificationLoss
from trainers.models import ModelOutput

# base trainer -> its DePT config (configs/trainers/DePT/)
DEPT_CONFIGS = {
    "CoOp": "coop_vit_b16_ep10_bs4_lr35",
    "CoCoOp": "cocoop_vit_b16_c4_ep10_batch1_ctxv1",
    "KgCoOp": "kgcoop_vit_b16_ep10_ctxv1_bs4_lr35",
    "MaPLe": "maple_vit_b16_c2_ep10_batch4_2ctx",
    "PromptSRC": "promptsrc_vit_b16_c2_ep20_batch4_4+4ctx",
    "GOPro": "gopro_vit_b16",
}


def dept_trainer(kit, folder, base: str, *opts: str, subsample: str = "base"):
    return make_trainer(kit, folder, base, DEPT_CONFIGS[base], "DATASET.SUBSAMPLE_CLASSES", subsample, *opts,
                        config_folder="DePT")


def randomise(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial values for every parameter (cwT starts as the identity, which would hide it)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))


def hand_probe(head: DecoupledHead, x: torch.Tensor, which: str) -> torch.Tensor:
    """W (γ ⊙ x + β) + b written out per row and class, as a reference."""
    film = head.film_lp_img if which == "image" else head.film_lp_text
    W, b = head.linear_probe_proj.weight.double(), head.linear_probe_proj.bias.double()
    gamma, beta = film.scale.double(), film.bias.double()
    x = x.double()
    return torch.stack([torch.stack([sum(W[c, e] * (gamma[e] * row[e] + beta[e]) for e in range(x.shape[1])) + b[c]
                                     for c in range(W.shape[0])]) for row in x])


def hand_cross_entropy(logits: torch.Tensor, label: torch.Tensor) -> float:
    rows = [math.log(sum(math.exp(v) for v in row.tolist())) - row[y].item() for row, y in zip(logits, label)]
    return sum(rows) / len(rows)


# ---- the loss terms ---------------------------------------------------------------------------
def test_linear_probe_loss_is_the_cross_entropy_of_the_label_text_and_image_rows():
    head = DecoupledHead(3, 2)
    randomise(head)
    image = torch.tensor([[1.0, 0.0, 2.0], [0.5, -1.0, 0.0]])
    text = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, -1.0]])       # [C, E]
    label = torch.tensor([1, 0])
    rows = torch.cat([hand_probe(head, text[label], "text"), hand_probe(head, image, "image")])
    expected = hand_cross_entropy(rows, torch.cat([label, label]))
    assert linear_probe_loss(head, image, text, label).item() == pytest.approx(expected, rel=1e-5)
    # per-image class features [B, C, E]: the row of each image's own label
    per_image = torch.stack([text, text.flip(0)])
    rows = torch.cat([hand_probe(head, torch.stack([per_image[0, 1], per_image[1, 0]]), "text"),
                      hand_probe(head, image, "image")])
    expected = hand_cross_entropy(rows, torch.cat([label, label]))
    assert linear_probe_loss(head, image, per_image, label).item() == pytest.approx(expected, rel=1e-5)


class CrossEntropyPlusConstant(nn.Module):
    """A base loss with a term beside its cross-entropy (like KgCoOp's W · L_kg)."""

    def forward(self, output, label):
        ce = F.cross_entropy(output.logits, label)
        return ce + 0.25, {"loss_ce": ce, "extra": torch.tensor(0.25)}


def test_dept_loss_turns_the_base_cross_entropy_into_its_fusion_and_keeps_the_other_terms():
    head = DecoupledHead(2, 2)
    randomise(head, seed=3)
    raw_image, raw_text = torch.tensor([[3.0, 0.0], [0.0, 0.5]]), torch.tensor([[2.0, 2.0], [-1.0, 0.5]])
    output = ModelOutput(logits=torch.tensor([[2.0, 0.0], [0.0, 1.0]]), image_features=F.normalize(raw_image, dim=-1),
                         text_features=F.normalize(raw_text, dim=-1), raw_image_features=raw_image, raw_text_features=raw_text)
    label = torch.tensor([0, 0])
    loss, terms = DePTLoss(CrossEntropyPlusConstant(), head, 0.7)(output, label)
    ce = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(1.0))) / 2
    # the head reads the features before normalisation, as upstream's FiLM and linear probe do
    rows = torch.cat([hand_probe(head, raw_text[label], "text"), hand_probe(head, raw_image, "image")])
    lp = hand_cross_entropy(rows, torch.cat([label, label]))
    assert terms["loss_lp"].item() == pytest.approx(lp, rel=1e-5)
    assert terms["extra"].item() == 0.25
    assert loss.item() == pytest.approx(0.3 * ce + 0.7 * lp + 0.25, rel=1e-5)
    # the plain prompt learners' loss: (1 - w) CE + w L_lp exactly
    loss, _ = DePTLoss(ClassificationLoss(), head, 0.7)(output, label)
    assert loss.item() == pytest.approx(0.3 * ce + 0.7 * lp, rel=1e-5)


@pytest.mark.parametrize("base, config, composes", [
    ("IVLP", "vit_b16_c2_ep5_batch4_2+2ctx", True), ("TCP", "vit_b16_ep100_ctxv1", True),
    ("VPT", "vit_b16_c2_ep5_batch4_4", False)])   # VPT's class features are fixed unit vectors
def test_the_bases_the_message_names_compose_and_others_stop_at_the_first_step(kit, tmp_path, base, config, composes):
    trainer = make_trainer(kit, tmp_path, base, config, "TRAINER.PLUGINS", "['DePT']", "DATASET.SUBSAMPLE_CLASSES", "base",
                           "TRAINER.IVLP.PROMPT_DEPTH_TEXT", "2", "TRAINER.IVLP.PROMPT_DEPTH_VISION", "2",
                           "TRAINER.VPT.PROMPT_DEPTH_VISION", "2", "TRAINER.TCP.TKE_BLOCK", "2")
    trainer.set_model_mode("train")
    inputs, label = trainer.model_inputs(one_batch(trainer))
    output = trainer.model(*inputs)
    if composes:
        assert torch.isfinite(trainer.criterion(output, label)[0])
        assert_close(F.normalize(output.raw_image_features, dim=-1), output.image_features, what=f"{base} image features")
    else:
        with pytest.raises(ValueError, match="unnormalised image and class features"):
            trainer.criterion(output, label)


def test_a_base_output_without_unnormalised_features_is_refused_with_the_bases_that_have_them():
    output = ModelOutput(logits=torch.zeros(1, 2), image_features=torch.ones(1, 2), text_features=torch.ones(2, 2))
    with pytest.raises(ValueError, match=r"unnormalised image and class features.*CoOp, CoCoOp"):
        DePTLoss(ClassificationLoss(), DecoupledHead(2, 2), 0.7)(output, torch.tensor([0]))


# ---- composed with six base methods -----------------------------------------------------------
@pytest.mark.parametrize("base", list(DEPT_CONFIGS))
def test_composed_model_is_the_base_model_plus_the_head_computed_by_hand(kit, tmp_path, base):
    composed = dept_trainer(kit, tmp_path / "dept", base)
    plain = dept_trainer(kit, tmp_path / "plain", base, "TRAINER.PLUGINS", "[]")
    assert composed.get_model_names()[:2] == [plain.get_model_names()[0], "DePT"]
    assert composed.model.learnable is composed.model.base.learnable   # what the base trainer optimises
    head = composed.model.plugin
    randomise(head)
    x = images(2)
    composed.set_model_mode("eval")
    plain.set_model_mode("eval")
    with torch.no_grad():
        base_out, ours = plain.model(x), composed.model(x)
        assert torch.equal(composed.model.base(x).logits, base_out.logits)   # the base model is untouched
        expected = 0.3 * base_out.logits.double() + 0.7 * hand_probe(head, base_out.raw_image_features, "image")
    assert_close(ours.logits, expected.float(), what=f"{base}+DePT fused logits", scale=expected.abs().max().item())
    assert torch.equal(composed.model_inference(x), ours.logits)

    # a training step: the base loss with its cross-entropy fused with the head's (hand arithmetic)
    composed.set_model_mode("train")
    torch.manual_seed(0)
    inputs, label = composed.model_inputs(one_batch(composed))
    output = composed.model(*inputs)
    loss, terms = composed.criterion(output, label)
    base_loss, _ = composed.criterion.base(output, label)
    raw_text = output.raw_text_features
    text = raw_text[label] if raw_text.dim() == 2 else raw_text[torch.arange(len(label)), label]
    rows = torch.cat([hand_probe(head, text.detach(), "text"), hand_probe(head, output.raw_image_features.detach(), "image")])
    lp = hand_cross_entropy(rows, torch.cat([label, label]))
    ce = hand_cross_entropy(output.logits.detach().double(), label)
    assert terms["loss_lp"].item() == pytest.approx(lp, rel=1e-4)
    assert loss.item() == pytest.approx(base_loss.item() - 0.7 * ce + 0.7 * lp, rel=1e-4, abs=1e-5)
    loss.backward()
    assert head.linear_probe_proj.weight.grad.abs().sum() > 0 and head.film_lp_text.scale.grad.abs().sum() > 0


def test_base_trainer_code_sees_its_own_model_attributes_through_the_composition(kit, tmp_path):
    trainer = dept_trainer(kit, tmp_path, "GOPro")
    assert trainer.model.pv_in_logits is trainer.model.base.pv_in_logits is True   # read by GOPro's checkpoint mapping
    with pytest.raises(AttributeError):
        trainer.model.no_such_attribute


def test_head_learns_at_its_multiple_of_the_learning_rate_on_the_same_schedule(kit, tmp_path):
    trainer = dept_trainer(kit, tmp_path, "KgCoOp")
    base_lr = trainer._optims["prompt_learner"].param_groups[0]["initial_lr"]
    assert base_lr == pytest.approx(0.0035)
    assert trainer._optims["DePT"].param_groups[0]["initial_lr"] == pytest.approx(0.0035 * 6.5)
    assert trainer.options.W == 2.0   # upstream's KgCoOp+DePT weight
    assert {type(s) for s in (trainer._scheds["DePT"], trainer._scheds["prompt_learner"])} == {type(trainer._scheds["DePT"])}


def test_new_classes_use_the_base_logits_alone(kit, tmp_path):
    composed = dept_trainer(kit, tmp_path / "dept", "CoOp", subsample="new")
    plain = dept_trainer(kit, tmp_path / "plain", "CoOp", "TRAINER.PLUGINS", "[]", subsample="new")
    assert composed.model.plugin.linear_probe_proj is None
    composed.set_model_mode("eval")
    plain.set_model_mode("eval")
    with torch.no_grad():
        assert torch.equal(composed.model(images(2)).logits, plain.model(images(2)).logits)


def test_without_fusion_base_classes_use_the_head_alone(kit, tmp_path):
    trainer = dept_trainer(kit, tmp_path, "CoOp", "TRAINER.DEPT.TEST_TIME_FUSION", "False")
    randomise(trainer.model.plugin)
    trainer.set_model_mode("eval")
    with torch.no_grad():
        out = trainer.model.base(images(2))
        expected = hand_probe(trainer.model.plugin, out.raw_image_features, "image")
        assert_close(trainer.model(images(2)).logits, expected.float(), what="head logits",
                     scale=expected.abs().max().item())


# ---- checkpoints ------------------------------------------------------------------------------
UPSTREAM_FROZEN = {"image_encoder.conv1.weight": torch.zeros(64, 3, 8, 8), "logit_scale": torch.tensor(4.6),
                   "text_encoder.positional_embedding": torch.zeros(77, 64)}


@pytest.mark.parametrize("base, folder", [("CoOp", "PromptLearner"), ("MaPLe", "MultiModalPromptLearner")])
def test_upstream_whole_model_checkpoint_evaluates(kit, tmp_path, base, folder):
    """Upstream's ExtrasLinearProbe<Base> saves the whole CustomCLIP in one file: the prompt
    learner under ``prompt_learner.``, cwT and the head under their names, frozen CLIP beside."""
    trainer = dept_trainer(kit, tmp_path / "run", base)
    generator = torch.Generator().manual_seed(5)
    head = {f"{k}": torch.randn(v.shape, generator=generator) for k, v in trainer.model.plugin.state_dict().items()}
    learner = trainer.model.learnable.state_dict()
    prefix = "prompt_learner." if base == "CoOp" else ""
    prompts = {prefix + k: torch.randn(v.shape, generator=generator) for k, v in learner.items()}
    write_upstream_checkpoint(tmp_path / "upstream", folder, 10, {**prompts, **head, **UPSTREAM_FROZEN})
    trainer.load_model(str(tmp_path / "upstream"), epoch=10)
    for key, value in head.items():
        assert torch.equal(trainer.model.plugin.state_dict()[key], value), key
    for key, value in trainer.model.learnable.state_dict().items():
        if key.split(".")[-1] not in ("token_prefix", "token_suffix"):
            assert torch.equal(value, prompts[prefix + key]), key

    # base-class predictions as upstream's ExtrasLinearProbe<Base>.forward computes them from the
    # file: FiLM and the linear probe on the towers' unnormalised outputs, fused 0.3 / 0.7
    x = images(4)
    trainer.set_model_mode("eval")
    with torch.no_grad():
        img_feats = trainer.model.base.raw_image_features(x)
        if base == "CoOp":   # CoOp's image tower is the frozen CLIP's: computed without our model
            assert torch.equal(img_feats, trainer.backbone.encode_image(x).features)
        text_feats = trainer.model.base.raw_text_features()
        similarity = trainer.backbone.logit_scale * F.normalize(img_feats, dim=-1) @ F.normalize(text_feats, dim=-1).t()
        probe = ((img_feats * head["film_lp_img.scale"] + head["film_lp_img.bias"]) @ head["linear_probe_proj.weight"].t()
                 + head["linear_probe_proj.bias"])
        expected = 0.3 * similarity + 0.7 * probe
        got = trainer.model_inference(x)
    assert_close(got, expected, what=f"upstream {base}+DePT base-class logits", scale=expected.abs().max().item())
    assert torch.equal(got.argmax(1), expected.argmax(1))
    # the head's logits are of the similarity's order (unnormalised features): it moves predictions
    assert probe.abs().max() > 0.1 * similarity.abs().max()


def test_own_folders_round_trip_and_new_classes_load_cwt_without_the_head(kit, tmp_path):
    trainer = dept_trainer(kit, tmp_path / "train", "CoOp")
    randomise(trainer.model.plugin)
    trainer.save_model(0, str(tmp_path / "train"))
    assert sorted(p.name for p in (tmp_path / "train").iterdir() if p.is_dir()) == ["DePT", "prompt_learner"]
    new = dept_trainer(kit, tmp_path / "new", "CoOp", subsample="new")
    new.load_model(str(tmp_path / "train"), epoch=1)
    assert torch.equal(new.model.plugin.film_lp_img.scale, trainer.model.plugin.film_lp_img.scale)
    assert torch.equal(new.model.learnable.ctx, trainer.model.learnable.ctx)
    plain_run = dept_trainer(kit, tmp_path / "plain", "CoOp", "TRAINER.PLUGINS", "[]")
    plain_run.save_model(0, str(tmp_path / "plain"))
    with pytest.raises(FileNotFoundError, match="TRAINER.PLUGINS"):
        new.load_model(str(tmp_path / "plain"), epoch=1)


# ---- config, run identity, bad input ----------------------------------------------------------
def test_run_identity_counts_the_plugin_node_and_the_plugin_list(kit, tmp_path):
    settings = settings_of(build_cfg(kit, tmp_path, "KgCoOp", DEPT_CONFIGS["KgCoOp"], config_folder="DePT"))
    assert settings["TRAINER.PLUGINS"] == ["DePT"] and settings["TRAINER.DEPT.WEIGHT"] == 0.7
    assert "TRAINER.COCOOP.N_CTX" not in settings and "TRAINER.DEPT.LR_MULT" in settings
    plain = settings_of(build_cfg(kit, tmp_path, "KgCoOp", "vit_b16_ep100_ctxv1"))
    assert not any(k.startswith("TRAINER.DEPT.") for k in plain)


def test_unknown_plugin_is_named_with_the_known_ones(kit, tmp_path):
    with pytest.raises(ValueError, match=r"unknown plug-ins \['DEPT'\].*'DePT'"):
        make_trainer(kit, tmp_path, "CoOp", "vit_b16_ctxv1", "TRAINER.PLUGINS", "['DEPT']")


@pytest.mark.parametrize("dataset, subsample, applies", [
    ("OxfordPets", "base", True), ("OxfordPets", "new", False), ("OxfordPets", "all", False),   # B2N; XD target
    ("ImageNet", "all", True), ("ImageNetV2", "all", True), ("ImageNetSketch", "all", True),    # ImageNet's 1000 classes
    ("ImageNetA", "all", False), ("ImageNetR", "all", False)])                                  # 200 of them: not sliced here
def test_the_head_applies_where_the_label_space_is_the_one_it_was_trained_on(dataset, subsample, applies):
    from yacs.config import CfgNode as CN

    from trainers.dept import head_applies

    assert head_applies(CN({"DATASET": CN({"NAME": dataset, "SUBSAMPLE_CLASSES": subsample})})) is applies


def test_a_method_with_its_own_update_rule_refuses_a_plugin(kit, tmp_path):
    trainer = make_trainer(kit, tmp_path, "ProGrad", "vit_b16", "TRAINER.PLUGINS", "['DePT']",
                           "DATASET.SUBSAMPLE_CLASSES", "base")
    with pytest.raises(ValueError, match="ProGrad has its own update rule"):
        trainer.before_train()


def test_training_where_the_head_has_no_label_space_stops_with_advice(kit, tmp_path):
    trainer = dept_trainer(kit, tmp_path, "CoOp", subsample="all")
    with pytest.raises(ValueError, match="SUBSAMPLE_CLASSES base"):
        trainer.before_train()


def test_report_rows_carry_regime_and_the_source_of_the_reported_number():
    assert regime(METHODS["promptsrc+dept"]) == "plug-in" and regime(METHODS["promptsrc"]) == "inductive"
    assert regime(METHODS["zsclip"]) == "training-free"
    reported = Reported.load(Paper.load())
    assert reported.b2n("PromptSRC+DePT", "average") == (85.19, 76.17, 80.43)
    assert reported.b2n_source("PromptSRC+DePT", "average").startswith("DePT paper")
    assert reported.b2n_source("KgCoOp", "average") == "htyao89/KgCoOp readme.md"   # the commit left out
    assert reported.b2n("KgCoOp+DePT", "eurosat") == (89.03, 71.07, 79.04)          # the paper's per-dataset table
    assert reported.b2n_source("GOPro+DePT", "average") == "–"                       # nothing published


# ---- registry and the reproduce command ------------------------------------------------------
COMPOSED = ("coop+dept", "cocoop+dept", "kgcoop+dept", "maple+dept", "promptsrc+dept", "gopro+dept")


@pytest.mark.parametrize("key", COMPOSED)
def test_composed_methods_are_registered_with_their_own_folder_and_configs(key):
    method, base = METHODS[key], METHODS[key.split("+")[0]]
    assert (method.trainer, method.plugins, method.group) == (base.trainer, ("DePT",), MODERN)
    assert method.folder == f"{base.trainer}_DePT" and method.label == f"{base.label}+DePT"
    assert "plug-in" in method.tags and method.kit_depth_keys == base.kit_depth_keys and method.in_checkout()
    config = yaml.safe_load(method.config_path(method.b2n_cfg).read_text())
    assert config["TRAINER"]["PLUGINS"] == list(method.plugins)   # the config composes what the registry says
    assert method.xd_cfg == method.b2n_cfg                         # upstream runs both protocols with one config


@pytest.mark.slow
def test_table1_with_three_composed_methods_on_the_kit_fills_their_rows(kit, tmp_path):
    output = tmp_path / "output"
    env = {"DATA": str(kit.data), "OUTPUT": str(output), "EXTRA_OPTS": " ".join(kit.opts()), "EPOCHS": "1",
           "METHODS": "kgcoop+dept promptsrc+dept gopro+dept", "DATASETS": "oxford_pets", "SEEDS": "1",
           "PYTHON": sys.executable}
    proc = run_script("reproduce/table1.sh", "--gpus", "", "--jobs", "2", env=env, timeout=1800)
    assert "6 run(s) done" in proc.stdout and "0 failed" in proc.stdout, proc.stdout
    runs = output / "base2new" / "train_base" / "oxford_pets" / "shots_16"
    for folder, model in (("KgCoOp_DePT", "prompt_learner"), ("PromptSRC_DePT", "VLPromptLearner"), ("GOPro_DePT", "gopro")):
        seed = next((runs / folder).glob("*/seed1"))
        assert (seed / model / "model.pth.tar-1").is_file() and (seed / "DePT" / "model.pth.tar-1").is_file()
    text = make_report(output, "--tables", "modern", "--methods", "kgcoop+dept", "promptsrc+dept", "gopro+dept",
                       "--seeds", "1", "--datasets", "oxford_pets")
    for label in ("KgCoOp+DePT", "PromptSRC+DePT", "GOPro+DePT"):
        pets = row_of(text, "OxfordPets", label)
        assert all(re.fullmatch(r"[\d.]+ (\[\d+\])+", cell) for cell in (pets[1], pets[4])), pets
        assert pets[-2] == "plug-in"   # the regime column
    average = row_of(text, "Average over the 1 listed datasets", "PromptSRC+DePT")
    assert average[2] == "85.19" and average[-1].startswith("DePT paper")


@pytest.mark.slow
def test_the_readme_plugin_runs_its_protocol_from_one_file_configs_and_a_registry_line(kit, tmp_path):
    """README "Adding a plug-in", done for real in a copy of the repository: the plug-in file, its
    CoOp config and one registry line; then scripts/run.sh trains CoOp+Temperature base-to-new on
    the kit (the plug-in's term in the log, its own folder and checkpoint) and evaluates the last
    epoch on the new classes, with no other edit anywhere."""
    repo = copy_of_repository(tmp_path / "repo")
    follow_readme_guide(repo, readme_guide("#### Adding a plug-in"),
                        ["trainers/temperature.py", "configs/trainers/Temperature/coop_vit_b16.yaml"],
                        r"```python\n(COMPOSED \+= .*?\n)```", "\nMETHODS.update({m.key: m for m in COMPOSED})")
    run_base2new_steps(repo, "coop+temperature", {"DATA": str(kit.data), "OUTPUT": str(tmp_path / "out"),
                                                  "EPOCHS": "2", "EXTRA_OPTS": " ".join(kit.opts())})
    runs = tmp_path / "out" / "base2new"
    trained = runs / "train_base/oxford_pets/shots_16/CoOp_Temperature/coop_vit_b16/seed1"
    train, test = (trained / "log.txt").read_text(), (runs / "test_new/oxford_pets/shots_16/CoOp_Temperature/coop_vit_b16/seed1/log.txt").read_text()
    assert "Finish training" in train and "entropy" in train and len(accuracies(train)) == 1
    assert (trained / "Temperature" / "model.pth.tar-2").is_file() and (trained / "prompt_learner" / "model.pth.tar-2").is_file()
    assert "Temperature/model.pth.tar-2" in test and "# classes  2" in test and len(accuracies(test)) == 1
