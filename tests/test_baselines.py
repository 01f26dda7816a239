"""Baseline trainers (CoCoOp, MaPLe, StyLIP, SLIP-style, IVLP, VPT): learning, frozen CLIP, upstream checkpoint
layouts, deep-prompt injection, image-conditioned prompts, scripts."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from yacs.config import CfgNode

from conftest import REPO, accuracies, make_trainer, run_script, script_env
from runs import identity as run_identity, steps
from runs.cli import build_parser, setup_cfg
from runs.records import resolve_load_epoch
from numerics import assert_close, assert_differs
from trainers.losses import simclr_loss
from trainers.prompts import encode_class_prompts
from trainers.templates import dataset_template, encode_templates

# (trainer, paper config, extra options; kit.opts() already fits the prompt depths to the tiny CLIP's 3 blocks)
METHODS = {
    "CoCoOp": ("vit_b16_c4_ep10_batch1_ctxv1", []),
    "MaPLe": ("vit_b16_c2_ep5_batch4_2ctx", []),
    "StyLIP": ("vit_b16", []),
    "SLIP": ("vit_b16", ["DATALOADER.TRAIN_X.BATCH_SIZE", "16"]),
    "IVLP": ("vit_b16_c2_ep5_batch4_2+2ctx", []),
    "VPT": ("vit_b16_c2_ep5_batch4_4", []),
}
# A learnable setting on the kit: no warm-up, a high learning rate, a few epochs.
FAST_TRAINING = {
    "CoCoOp": ["OPTIM.MAX_EPOCH", "2", "OPTIM.LR", "0.02", "DATALOADER.TRAIN_X.BATCH_SIZE", "4"],
    "MaPLe": ["OPTIM.MAX_EPOCH", "2", "OPTIM.LR", "0.05"],
    "StyLIP": ["OPTIM.MAX_EPOCH", "2", "OPTIM.LR", "0.01"],
    "SLIP": ["OPTIM.MAX_EPOCH", "4", "OPTIM.LR", "1.0"],
    "IVLP": ["OPTIM.MAX_EPOCH", "3", "OPTIM.LR", "0.05"],
    "VPT": ["OPTIM.MAX_EPOCH", "3", "OPTIM.LR", "0.05"],
}
# The checkpoint layouts of upstream CoCoOp / MaPLe / IVLP / VPT, learnable part (tiny kit: D_t = D_v = 64, E = 32, 5 classes).
UPSTREAM_KEYS = {
    "CoCoOp": {"ctx": (4, 64), "meta_net.linear1.weight": (2, 32), "meta_net.linear1.bias": (2,),
               "meta_net.linear2.weight": (64, 2), "meta_net.linear2.bias": (64,),
               "token_prefix": (5, 1, 64), "token_suffix": (5, 72, 64)},
    "MaPLe": {"prompt_learner.ctx": (2, 64), "prompt_learner.proj.weight": (64, 64), "prompt_learner.proj.bias": (64,),
              **{f"prompt_learner.compound_prompts_text.{i}": (2, 64) for i in range(2)},
              **{f"prompt_learner.compound_prompt_projections.{i}.weight": (64, 64) for i in range(2)},
              **{f"prompt_learner.compound_prompt_projections.{i}.bias": (64,) for i in range(2)},
              "prompt_learner.token_prefix": (5, 1, 64), "prompt_learner.token_suffix": (5, 74, 64)},
    "IVLP": {"prompt_learner.ctx": (2, 64), "prompt_learner.token_prefix": (5, 1, 64),
             "prompt_learner.token_suffix": (5, 74, 64), "image_encoder.VPT": (2, 64),
             **{f"{tower}_encoder.transformer.resblocks.{j}.VPT_shallow": (2, 64) for tower in ("image", "text")
                for j in (1, 2)}},
    "VPT": {"image_encoder.VPT": (8, 64), **{f"image_encoder.transformer.resblocks.{j}.VPT_shallow": (8, 64)
                                             for j in (1, 2)}},
}
UPSTREAM_EPOCH = {"CoCoOp": 10, "MaPLe": 5, "IVLP": 5, "VPT": 5}
MODEL_NAMES = {"CoCoOp": "prompt_learner", "MaPLe": "MultiModalPromptLearner", "StyLIP": "stylip", "SLIP": "slip",
               "IVLP": "VLPromptLearner", "VPT": "prompt_learner"}


def build(kit, path: Path, method: str, *opts: str):
    config, kit_opts = METHODS[method]
    return make_trainer(kit, path, method, config, *kit_opts, *opts)


@pytest.fixture(scope="module")
def trainers(kit, tmp_path_factory):
    cache = {}

    def get(method: str):
        if method not in cache:
            cache[method] = build(kit, tmp_path_factory.mktemp(method), method)
        return cache[method]

    return get


def one_batch(trainer):
    return next(iter(trainer.train_loader_x))


def images(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


# ---- learning ---------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_training_lowers_the_loss_and_the_run_evaluates(kit, tmp_path, method):
    trainer = build(kit, tmp_path, method, "OPTIM.WARMUP_EPOCH", "0", *FAST_TRAINING[method])
    losses = []
    step = trainer.forward_backward
    trainer.forward_backward = lambda batch: losses.append(step(batch)["loss"]) or {"loss": losses[-1]}
    trainer.train()
    k = max(2, len(losses) // 4)
    assert sum(losses[-k:]) / k < 0.9 * sum(losses[:k]) / k, losses
    saved = tmp_path / MODEL_NAMES[method] / f"model.pth.tar-{trainer.max_epoch}"
    assert saved.is_file()
    assert 0.0 <= trainer.test() <= 100.0


@pytest.mark.parametrize("method", list(METHODS))
def test_only_the_learnable_module_gets_gradients_and_frozen_clip_stays_unchanged(trainers, method):
    trainer = trainers(method)
    clip_before = {k: v.clone() for k, v in trainer.backbone.state_dict().items()}
    learnable = trainer.model.learnable
    before = {k: v.clone() for k, v in learnable.named_parameters()}
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 2
    trainer.forward_backward(one_batch(trainer))
    for key, value in trainer.backbone.state_dict().items():
        assert torch.equal(value, clip_before[key]), key
    assert all(p.grad is None for p in trainer.backbone.parameters())
    assert [k for k, p in learnable.named_parameters() if p.grad is None] == []  # every learnable tensor is used
    assert any(not torch.equal(p, before[k]) for k, p in learnable.named_parameters())
    assert trainer.get_model_names() == [MODEL_NAMES[method]]
    assert not any(k.startswith(("backbone", "clip.")) for k in learnable.state_dict())


@pytest.mark.parametrize("method", list(METHODS))
def test_visual_embedding_is_a_normalised_batch_of_image_features(trainers, method):
    model = trainers(method).model
    model.eval()
    with torch.no_grad():
        embedding = model.visual_embedding(images())
    assert embedding.shape == (3, trainers(method).backbone.embed_dim)
    assert_close(embedding.norm(dim=-1), torch.ones(3), what=f"{method} image embedding norms")


# ---- checkpoints ------------------------------------------------------------------------------
@pytest.mark.parametrize("method", list(UPSTREAM_KEYS))
def test_saved_checkpoints_have_the_upstream_key_names_and_shapes(trainers, tmp_path, method):
    trainer = trainers(method)
    trainer.save_model(0, str(tmp_path))
    checkpoint = torch.load(tmp_path / MODEL_NAMES[method] / "model.pth.tar-1", weights_only=True)
    assert {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items()} == UPSTREAM_KEYS[method]


def write_upstream_checkpoint(directory: Path, name: str, epoch: int, state_dict: dict) -> None:
    folder = directory / name
    folder.mkdir(parents=True)
    torch.save({"state_dict": state_dict, "epoch": epoch, "optimizer": None, "scheduler": None},
               folder / f"model.pth.tar-{epoch}")


@pytest.mark.parametrize("method", list(UPSTREAM_KEYS))
def test_upstream_checkpoint_files_load_with_eval_only_semantics(trainers, tmp_path, method):
    """An upstream file, trained on another label space (3 classes) and, for MaPLe, holding the
    whole CustomCLIP (frozen towers included), loads into the learnable module."""
    frozen = {"image_encoder.conv1.weight": torch.zeros(64, 3, 8, 8), "logit_scale": torch.tensor(4.6),
              "text_encoder.transformer.resblocks.0.attn.in_proj_weight": torch.zeros(192, 64)}
    trainer = trainers(method)
    generator = torch.Generator().manual_seed(1)
    state = {k: torch.randn(shape, generator=generator) for k, shape in UPSTREAM_KEYS[method].items()}
    for key in [k for k in state if k.endswith(("token_prefix", "token_suffix"))]:
        state[key] = state[key][:3]  # other classes: these buffers must be dropped
    if method != "CoCoOp":  # registered as the whole model upstream
        state.update(frozen)
    epoch = UPSTREAM_EPOCH[method]
    write_upstream_checkpoint(tmp_path, MODEL_NAMES[method], epoch, state)
    buffers = {k: v.clone() for k, v in trainer.model.learnable.state_dict().items() if "token_" in k}
    trainer.load_model(str(tmp_path), epoch)
    loaded = trainer.model.learnable.state_dict()
    for key, value in state.items():
        if key in buffers:
            assert torch.equal(loaded[key], buffers[key]), key  # this run's class names are kept
        elif key in loaded:
            assert torch.equal(loaded[key], value), key
    with pytest.raises(FileNotFoundError, match="--load-epoch"):
        trainer.load_model(str(tmp_path), 7)


# ---- CoCoOp -----------------------------------------------------------------------------------
def test_cocoop_batched_prompts_equal_per_image_encoding(trainers):
    model = trainers("CoCoOp").model
    learner = model.learnable
    with torch.no_grad():
        features = model.visual_embedding(images(4))
        contexts = learner.contexts(features)                                      # [B, M, D_t]
        batched = model.text_features(features)                                    # [B, C, E]
        looped = torch.stack([encode_class_prompts(model.backbone, learner, learner.assemble(c), model.text_encoding)
                              for c in contexts])
    assert_close(batched, looped, what="CoCoOp batched vs per-image class features")


def test_cocoop_meta_net_sees_the_normalised_feature_and_shifts_every_token_alike(trainers):
    learner = trainers("CoCoOp").model.learnable
    features = F.normalize(torch.randn(2, 32), dim=-1)
    contexts = learner.contexts(features)
    shift = contexts - learner.ctx
    assert contexts.shape == (2, 4, 64)
    assert_close(shift[:, 0], shift[:, 3], what="meta-net shift of tokens 0 and 3")
    assert_close(shift[:, 0], learner.meta_net(features), what="meta-net shift vs meta_net(feature)")


def test_cocoop_evaluation_groups_images_to_bound_the_text_batch(kit, tmp_path, monkeypatch):
    trainer = build(kit, tmp_path, "CoCoOp", "TRAINER.COCOOP.TEXT_CHUNK", "10")  # 10 prompts = 2 images × 5 classes
    sizes = []
    encode = trainer.backbone.encode_text
    monkeypatch.setattr(trainer.backbone, "encode_text", lambda p, *a, **kw: sizes.append(p.shape[0]) or encode(p, *a, **kw))
    x = images(5)
    with torch.no_grad():
        grouped = trainer.model(x).logits
        whole = torch.cat([trainer.model(part).logits for part in x.split(1)])
    assert sizes[:3] == [10, 10, 5]
    assert_close(grouped, whole, what="CoCoOp logits, image groups vs one image per call")


@pytest.mark.parametrize("method", ["CoCoOp", "StyLIP"])
def test_class_features_depend_on_the_image(trainers, method):
    model = trainers(method).model
    x = images(2)
    with torch.no_grad():
        if method == "CoCoOp":
            text = model.text_features(model.visual_embedding(x))
        else:
            _, mean, std = model.encode_with_stats(x)
            text = model.text_features(mean, std)
    assert text.shape == (2, 5, 32)
    assert (text[0] - text[1]).abs().max() > 1e-4


# ---- MaPLe ------------------------------------------------------------------------------------
def mlp_input(block, run) -> torch.Tensor:
    """The input of ``block.mlp`` (tokens after attention) while ``run()`` executes."""
    captured = []
    handle = block.mlp.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0].detach()))
    try:
        with torch.no_grad():
            run()
    finally:
        handle.remove()
    return captured[0]


def test_maple_deep_prompts_change_the_middle_blocks_of_both_towers(kit, tmp_path):
    trainer = build(kit, tmp_path, "MaPLe")
    model, backbone, x = trainer.model, trainer.backbone, images(2)
    vision, text = backbone.clip.visual.transformer.resblocks, backbone.clip.transformer.resblocks
    tokens = model.learnable.prompt_learner.tokenized_prompts  # "a photo of a <class>." as plain CLIP reads it

    plain = mlp_input(vision[1], lambda: backbone.encode_image(x))
    prompted = mlp_input(vision[1], lambda: model.visual_embedding(x))
    assert prompted.shape[1] == plain.shape[1] + 2  # two coupled visual prompt tokens
    assert_differs(prompted[:, : plain.shape[1]], plain, what="vision block 1 with vs without deep prompts")

    plain_text = [mlp_input(text[i], lambda: backbone.encode_tokens(tokens)) for i in (0, 1)]
    prompted_text = [mlp_input(text[i], model.text_features) for i in (0, 1)]
    # block 0 reads the initial ctx ("a photo") exactly like plain CLIP; block 1 reads the deep prompts
    assert_close(prompted_text[0], plain_text[0], what="text block 0, MaPLe vs plain CLIP")
    assert_differs(prompted_text[1], plain_text[1], what="text block 1 with vs without deep prompts")


def test_maple_context_replaces_a_photo_and_keeps_of_a_as_text(kit, tmp_path):
    trainer = build(kit, tmp_path, "MaPLe")
    learner, backbone = trainer.model.learnable.prompt_learner, trainer.backbone
    names = [c.replace("_", " ") for c in trainer.dm.dataset.classnames]
    expected = backbone.embed_tokens(backbone.tokenize([f"a photo of a {n}." for n in names]))[:, : learner.length]
    assert learner.n_ctx == 2
    assert_close(learner.assemble().detach(), expected, what="MaPLe prompts vs embedded 'a photo of a <class>.'")
    projections = learner.compound_prompt_projections
    assert torch.equal(projections[0].weight, projections[1].weight)  # couplings start as copies


def test_maple_rejects_a_depth_beyond_the_backbone(kit, tmp_path):
    with pytest.raises(ValueError, match=r"TRAINER.MAPLE.PROMPT_DEPTH=9 must lie in 1..3"):
        make_trainer(kit, tmp_path, "MaPLe", "vit_b16_c2_ep5_batch4_2ctx", "TRAINER.MAPLE.PROMPT_DEPTH", "9")


def test_maple_text_features_are_encoded_once_per_evaluation(kit, tmp_path, monkeypatch):
    trainer = build(kit, tmp_path, "MaPLe", "DATALOADER.TEST.BATCH_SIZE", "20")
    calls = []
    encode = trainer.model.raw_text_features
    monkeypatch.setattr(trainer.model, "raw_text_features", lambda: calls.append(1) or encode())
    trainer.test()
    assert len(calls) == 1 and len(trainer.test_loader) > 1


# ---- StyLIP -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fusion, content_keys", [("text_add", {"content.weight": (32, 192)}),
                                                   ("token_add", {"content.weight": (64, 192)}),
                                                   ("none", {})])
def test_stylip_modules_follow_the_fusion_choice(kit, tmp_path, fusion, content_keys):
    trainer = build(kit, tmp_path, "StyLIP", "TRAINER.STYLIP.CONTENT_FUSION", fusion, "TRAINER.STYLIP.CONTENT_INIT", "default")
    shapes = {k: tuple(v.shape) for k, v in trainer.model.learnable.state_dict().items()}
    assert shapes["style.proj.weight"] == (3, 64, 2 * 64)  # one [μ ‖ σ] → token map per layer
    assert {k: v for k, v in shapes.items() if k.startswith("content.") and k.endswith("weight")} == content_keys
    assert "prompt_learner.ctx" not in shapes  # no free context: the L tokens are generated
    assert trainer.model(images(2)).logits.shape == (2, 5)


def test_stylip_zero_initialised_content_starts_from_the_style_prompts_alone(kit, tmp_path):
    fused = build(kit, tmp_path / "fused", "StyLIP")
    plain = build(kit, tmp_path / "plain", "StyLIP", "TRAINER.STYLIP.CONTENT_FUSION", "none")
    plain.model.learnable.style.load_state_dict(fused.model.learnable.style.state_dict())
    with torch.no_grad():
        assert_close(fused.model(images()).logits, plain.model(images()).logits, what="StyLIP logits, zero content vs none")


def test_stylip_bad_options_name_the_key(kit, tmp_path):
    with pytest.raises(ValueError, match="TRAINER.STYLIP.CONTENT_FUSION"):
        build(kit, tmp_path, "StyLIP", "TRAINER.STYLIP.CONTENT_FUSION", "concat")
    with pytest.raises(ValueError, match="no free context"):
        build(kit, tmp_path / "b", "StyLIP", "TRAINER.STYLIP.CTX_INIT", "a photo of a")


# ---- SLIP-style -------------------------------------------------------------------------------
def test_slip_starts_as_zero_shot_clip(kit, tmp_path):
    trainer = build(kit, tmp_path, "SLIP")
    backbone, x = trainer.backbone, images()
    weights = encode_templates(backbone, trainer.dm.dataset.classnames, [dataset_template("OxfordPets")])
    trainer.set_model_mode("eval")
    with torch.no_grad():
        zero_shot = backbone.logit_scale * F.normalize(backbone.encode_image(x).features, dim=-1) @ weights.t()
        assert_close(trainer.model(x).logits, zero_shot, what="SLIP logits before training vs zero-shot CLIP")


def test_slip_views_and_the_ssl_loss_reaches_the_shared_projector(trainers):
    trainer = trainers("SLIP")
    batch = one_batch(trainer)
    assert batch["img"].shape == batch["img2"].shape == batch["img3"].shape
    assert (batch["img2"] - batch["img3"]).abs().mean() > 0.05
    trainer.set_model_mode("train")
    _, summary = trainer.compute_loss(batch)
    assert {"loss_clip", "loss_ssl"} <= set(summary)
    head = trainer.model.learnable
    head.zero_grad()
    views = torch.cat([batch["img2"], batch["img3"]])
    u = trainer.model.project(trainer.model.frozen_embedding(views)).chunk(2)
    simclr_loss(head.ssl_head(u[0]), head.ssl_head(u[1])).backward()
    assert head.image_projector.weight.grad.abs().sum() > 0  # SSL head sits on top of P_v


@pytest.mark.parametrize("opts, terms", [(["TRAINER.SLIP.CLIP_LOSS", "in_batch", "TRAINER.SLIP.SSL_HEAD", "mlp3"],
                                          {"loss_clip", "loss_ssl"}),
                                         (["TRAINER.SLIP.SSL_SCALE", "0.0", "TRAINER.SLIP.TEMPLATE", "a photo of a {}."],
                                          {"loss_clip"})])
def test_slip_options(kit, tmp_path, opts, terms):
    trainer = build(kit, tmp_path, "SLIP", *opts)
    batch = one_batch(trainer)
    _, summary = trainer.compute_loss(batch)
    assert {k for k in summary if k.startswith("loss_")} == terms
    if "SSL_SCALE" in opts:
        assert "img2" not in batch  # no SSL views are built when their loss is off


def test_slip_template_must_hold_a_class_slot(kit, tmp_path):
    with pytest.raises(ValueError, match=r"TRAINER.SLIP.TEMPLATE"):
        build(kit, tmp_path, "SLIP", "TRAINER.SLIP.TEMPLATE", "a photo")


# ---- IVLP / VPT -------------------------------------------------------------------------------
def test_language_only_ivlp_has_no_vision_prompts(kit, tmp_path):
    trainer = make_trainer(kit, tmp_path, "IVLP", "vit_b16_c2_ep5_batch4_4ctx_language_only")
    keys = set(trainer.model.learnable.state_dict())
    assert not any(k.startswith("image_encoder") for k in keys)
    prompts = trainer.model.learnable
    assert prompts.prompt_learner.n_ctx == 4 and len(prompts.text_encoder.deep_prompts()) == 2
    x = images(2)
    with torch.no_grad():
        assert_close(trainer.model.visual_embedding(x), F.normalize(trainer.backbone.encode_image(x).features, dim=-1),
                     what="language-only IVLP image embedding vs plain CLIP")


def test_vpt_text_is_the_fixed_template(trainers):
    trainer = trainers("VPT")
    expected = encode_templates(trainer.backbone, trainer.dm.dataset.classnames, ["a photo of a {}."])
    assert_close(trainer.model.class_features, expected, what="VPT class features vs the fixed template")


# ---- scripts ----------------------------------------------------------------------------------
SCRIPT_FOLDERS = {"cocoop": "CoCoOp", "maple": "MaPLe", "stylip": "StyLIP", "slip": "SLIP", "ivlp": "IVLP", "vpt": "VPT"}


def script_setting(folder: str, name: str, output: Path, dataset: str = "dtd", **env: str) -> dict:
    """TRAINER, CFG and --load-epoch of the train.py run a thin method script makes (listed by the
    step, runs.steps.command_runs), with its arguments."""
    args = ("1",) if name == "xd_train" else (dataset, "1")
    run, = steps.command_runs(["bash", f"scripts/{folder}/{name}.sh", *args], script_env(OUTPUT=str(output), **env))
    argv = list(run.argv)
    value = lambda flag: argv[argv.index(flag) + 1] if flag in argv else None  # noqa: E731
    return {"TRAINER": value("--trainer"), "CFG": Path(value("--config-file")).stem, "LOADEP": value("--load-epoch"),
            "argv": argv, "folder": run.folder}


def last_epoch_after(train_argv) -> int:
    """What ``--load-epoch last`` loads once the training run ``train_argv`` recorded itself (its
    config.yaml and run.json, as train.py writes them before training)."""
    parsed = build_parser().parse_args(train_argv)
    cfg = setup_cfg(parsed)
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    run_identity.record(cfg, parsed)
    return resolve_load_epoch("last", cfg.OUTPUT_DIR)


@pytest.mark.parametrize("folder", list(SCRIPT_FOLDERS))
def test_scripts_use_existing_configs_and_load_their_last_epoch(folder, tmp_path):
    for train, test in (("base2new_train", "base2new_test"), ("xd_train", "xd_test")):
        trained, tested = script_setting(folder, train, tmp_path), script_setting(folder, test, tmp_path)
        assert trained["TRAINER"] == tested["TRAINER"] == SCRIPT_FOLDERS[folder] and trained["CFG"] == tested["CFG"]
        config = REPO / "configs" / "trainers" / trained["TRAINER"] / f"{trained['CFG']}.yaml"
        assert tested["LOADEP"] == "last" and tested["argv"][tested["argv"].index("--model-dir") + 1] == str(trained["folder"])
        with open(config) as f:
            assert last_epoch_after(trained["argv"]) == CfgNode.load_cfg(f).OPTIM.MAX_EPOCH, (test, config)


@pytest.mark.parametrize("folder, dataset, cfg, epochs", [
    ("coop", "imagenet", "", 50), ("coop", "dtd", "", 200), ("coop", "imagenet", "vit_b16_ctxv1", 50),
    ("prograd", "imagenet", "", 50), ("prograd", "dtd", "", 200), ("gopro", "dtd", "vit_b16_official", 50),
])
def test_load_epoch_last_is_the_max_epoch_of_the_config_trained(tmp_path, folder, dataset, cfg, epochs):
    """CoOp and ProGrad train ImageNet for 50 epochs (another config), the rest for 200; GOPro's
    official-cost config; no script names an epoch."""
    env = {"CFG": cfg} if cfg else {}
    trained = script_setting(folder, "base2new_train", tmp_path, dataset, **env)
    assert script_setting(folder, "base2new_test", tmp_path, dataset, **env)["LOADEP"] == "last"
    assert last_epoch_after(trained["argv"]) == epochs


@pytest.mark.slow
def test_maple_base2new_scripts_end_to_end(kit, tmp_path):
    env = {"DATA": str(kit.data), "OUTPUT": str(tmp_path), "EPOCHS": "1",
           "EXTRA_OPTS": " ".join(kit.opts())}
    run_script("maple/base2new_train.sh", "oxford_pets", "1", env=env)
    run_script("maple/base2new_test.sh", "oxford_pets", "1", env=env)
    cfg = "vit_b16_c2_ep5_batch4_2ctx"
    base = (tmp_path / f"base2new/train_base/oxford_pets/shots_16/MaPLe/{cfg}/seed1/log.txt").read_text()
    new = (tmp_path / f"base2new/test_new/oxford_pets/shots_16/MaPLe/{cfg}/seed1/log.txt").read_text()
    assert "Finish training" in base and len(accuracies(base)) == 1
    assert "# classes  2" in new and len(accuracies(new)) == 1
