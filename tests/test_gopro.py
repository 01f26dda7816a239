"""GOPro: shapes, what learns, loss switches, views, evaluation cost, checkpoints, scripts."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import accuracies, make_trainer, run_script
from dassl.utils import set_random_seed
from numerics import assert_close, assert_differs, tolerance
from trainers.losses import simclr_loss
from trainers.gopro import GOPro, GOProOutput, OFFICIAL_SWITCHES, active_views


def one_batch(trainer):
    return next(iter(trainer.train_loader_x))


@pytest.fixture(scope="module")
def trainer(kit, tmp_path_factory) -> GOPro:
    return make_trainer(kit, tmp_path_factory.mktemp("gopro"), "GOPro", "vit_b16", "DATALOADER.TRAIN_X.BATCH_SIZE", "4")


def test_a_batch_of_one_image_is_refused_before_training_the_contrastive_loss(kit, tmp_path):
    single = make_trainer(kit, tmp_path / "one", "GOPro", "vit_b16", "DATALOADER.TRAIN_X.BATCH_SIZE", "1")
    with pytest.raises(ValueError, match=r"at least 2 images per step.*BATCH_SIZE 1 on 1 process.*W_CON 0"):
        single.train()
    without_con = make_trainer(kit, tmp_path / "no_con", "GOPro", "vit_b16", "DATALOADER.TRAIN_X.BATCH_SIZE", "1",
                               "TRAINER.GOPRO.W_CON", "0.0")
    without_con.require_contrastive_pairs()  # nothing to contrast: batch 1 trains


def test_primitives_prompts_and_text_features_have_the_documented_shapes(trainer):
    model, backbone = trainer.model, trainer.backbone
    images = torch.randn(4, 3, 32, 32)
    z_hat, mean, std = model.encode_with_stats(images)
    layers, d_v, d_t = backbone.num_vision_layers, backbone.vision_width, backbone.text_width
    assert z_hat.shape == (4, backbone.embed_dim) and mean.shape == std.shape == (4, layers, d_v)
    g = model.primitives(mean, std)
    assert g.shape == (4, layers, d_t)
    assert model.learnable.rho_for("moco")(g).shape == (4, 4, d_t)  # M = 4 from "a photo of a"
    text = model.text_features([g, g], ["orig", "augmix"])
    assert text.shape == (2, 4, trainer.num_classes, backbone.embed_dim)
    assert_differs(text[0], text[1], what="views")  # ρ_f and ρ_Au are separate heads
    assert_differs(text[0, 0], text[0, 1], what="images")  # class features depend on the image


def test_one_forward_serves_training_and_evaluation(trainer):
    """Evaluation passes x alone; a training step adds the views its losses read. The logits are x's either way."""
    model, backbone = trainer.model, trainer.backbone
    x, moco, augmix = (torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(s)) for s in range(3))
    trainer.set_model_mode("eval")
    with torch.no_grad():
        evaluation = model(x)
        training = model(x, {"moco": moco, "augmix": augmix}, text_views=["orig", "augmix"])
    c, e = trainer.num_classes, backbone.embed_dim
    assert isinstance(training, GOProOutput) and isinstance(evaluation, GOProOutput)
    assert training.views == ("orig", "moco", "augmix") and training.text_views == ("orig", "augmix")
    assert training.frozen_features.shape == (4, 3, e) and training.view_text_features.shape == (4, 2, c, e)
    assert evaluation.views == evaluation.text_views == ("orig",) and evaluation.logits.shape == (4, c)
    assert_close(training.logits, evaluation.logits, what="x's logits with and without the extra views")
    assert_close(training.text("orig"), training.text_features, what="x's class features")
    frozen = torch.nn.functional.normalize(backbone.encode_image(moco).features, dim=-1)
    assert_close(training.frozen("moco"), frozen, what="ẑ of the MoCo view")
    assert_close(training.image_features, model.visual_embedding(x), what="the logits' image side")
    assert_differs(training.text("augmix"), training.text_features, what="class features of x and its AugMix view")
    with pytest.raises(ValueError, match="start with 'orig'"):
        model(x, {"moco": moco}, text_views=["moco"])


def test_gopro_loss_is_the_weighted_sum_of_the_paper_terms(trainer):
    model, criterion = trainer.model, trainer.criterion
    x, moco, augmix = (torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(s)) for s in range(3))
    label = torch.tensor([0, 1, 2, 3])
    trainer.set_model_mode("eval")  # BatchNorm with its running statistics: the same in both computations
    with torch.no_grad():
        output = model(x, {"moco": moco, "augmix": augmix}, text_views=["orig", "moco", "augmix"])
        loss, terms = criterion(output, label)
        prompter, t = model.learnable, output.text_features
        head = lambda z: prompter.contrastive_bn(prompter.image_projector(z))
        expected = {"loss_ce": torch.nn.functional.cross_entropy(output.logits, label),
                    "loss_sem": sum((t - output.text(v)).pow(2).sum(-1).mean() for v in ("moco", "augmix")),
                    "loss_con": simclr_loss(head(output.frozen("orig")), head(output.frozen("moco")), 0.1)}
    assert set(terms) == set(expected)
    for key, value in expected.items():
        assert_close(terms[key], value, what=key)
    assert_close(loss, sum(expected.values()), what="L with unit weights")


def test_only_gopro_modules_learn_and_clip_stays_frozen(trainer):
    clip_before = {k: v.clone() for k, v in trainer.backbone.state_dict().items()}
    learn_before = {k: v.clone() for k, v in trainer.model.learnable.state_dict().items()}
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 2
    trainer.forward_backward(one_batch(trainer))
    for key, value in trainer.backbone.state_dict().items():
        assert torch.equal(value, clip_before[key]), key
    changed = {k for k, v in trainer.model.learnable.state_dict().items() if not torch.equal(v, learn_before[k])}
    for expected in ("prompt_learner.ctx", "style.proj.weight", "content.proj.weight", "rho.orig.mix.weight",
                     "rho.moco.mix.weight", "rho.augmix.mix.weight", "image_projector.weight"):
        assert expected in changed, expected
    assert not any("token_" in k for k in changed)
    registered = set(trainer.get_model_names())
    assert registered == {"gopro"}
    assert not any(k.startswith("backbone") for k in trainer._models["gopro"].state_dict())


@pytest.mark.parametrize("weights, sem_views, expected_terms, expected_views", [
    (("1.0", "0.0", "0.0"), "['moco', 'augmix']", {"loss_ce"}, ["orig"]),
    (("1.0", "0.0", "1.0"), "['moco', 'augmix']", {"loss_ce", "loss_con"}, ["orig", "moco"]),
    (("1.0", "1.0", "0.0"), "['augmix']", {"loss_ce", "loss_sem"}, ["orig", "augmix"]),
    (("1.0", "1.0", "1.0"), "['moco', 'augmix']", {"loss_ce", "loss_sem", "loss_con"}, ["orig", "moco", "augmix"]),
])
def test_zero_weight_removes_the_term_and_its_branch(kit, tmp_path, weights, sem_views, expected_terms, expected_views):
    w_ce, w_sem, w_con = weights
    trainer = make_trainer(kit, tmp_path, "GOPro", "vit_b16", "TRAINER.GOPRO.W_CE", w_ce, "TRAINER.GOPRO.W_SEM",
                           w_sem, "TRAINER.GOPRO.W_CON", w_con, "TRAINER.GOPRO.SEM_VIEWS", sem_views)
    assert active_views(trainer.options) == expected_views
    batch = one_batch(trainer)
    assert sum(k.startswith("img") for k in batch) == len(expected_views)  # unused views are not even loaded
    _, summary = trainer.compute_loss(batch)
    assert {k for k in summary if k.startswith("loss_")} == expected_terms


@pytest.mark.parametrize("rho_init", ["default", "zeros"])
def test_first_step_logs_the_prompt_shift_against_the_context(kit, tmp_path, capsys, rho_init):
    trainer = make_trainer(kit, tmp_path, "GOPro", "vit_b16", "TRAINER.GOPRO.RHO_INIT", rho_init)
    capsys.readouterr()
    for _ in range(2):
        trainer.compute_loss(one_batch(trainer))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Prompt shift")]
    assert len(lines) == 1  # once per run
    shift, ctx = (float(x) for x in re.findall(r"\|(?:R|ctx)\| = ([0-9.e+-]+)", lines[0]))
    expected_ctx = trainer.model.learnable.prompt_learner.ctx.norm(dim=-1).mean().item()
    assert ctx == pytest.approx(expected_ctx, rel=1e-3)
    assert (shift == 0.0) == (rho_init == "zeros")  # zeros: the first prompt is CTX_INIT exactly


def test_views_differ_from_each_other_and_from_the_original(trainer):
    batch = one_batch(trainer)
    img, moco, augmix = batch["img"], batch["img2"], batch["img3"]
    assert img.shape == moco.shape == augmix.shape
    for a, b in ((img, moco), (img, augmix), (moco, augmix)):
        assert (a - b).abs().mean() > 0.05


def test_evaluation_runs_one_image_pass_per_image_and_only_the_original_branch(trainer, monkeypatch):
    calls = []
    encode = trainer.backbone.encode_image
    monkeypatch.setattr(trainer.backbone, "encode_image", lambda x, **kw: calls.append(x.shape[0]) or encode(x, **kw))
    used = []
    rho_for = trainer.model.learnable.rho_for
    monkeypatch.setattr(trainer.model.learnable, "rho_for", lambda v: used.append(v) or rho_for(v))
    trainer.test()
    assert sum(calls) == len(trainer.dm.dataset.test) and set(used) == {"orig"}


def test_official_switch_sets_every_deviation(kit, tmp_path):
    trainer = make_trainer(kit, tmp_path, "GOPro", "vit_b16_official")
    for key, value in OFFICIAL_SWITCHES.items():
        assert trainer.options[key] == value, key
    assert set(trainer.model.learnable.rho) == {"shared"}
    projector = trainer.model.learnable.image_projector.weight
    assert not torch.equal(projector, torch.eye(len(projector)))  # the official simproj: nn.Linear's init
    g = torch.randn(2, trainer.backbone.num_vision_layers, trainer.backbone.text_width)
    tokens = trainer.model.learnable.rho_for("orig")(g)
    assert torch.equal(tokens[:, 0], tokens[:, 3])  # official ρ: M identical tokens
    _, summary = trainer.compute_loss(one_batch(trainer))  # views through the wrapping uint8 round trip
    assert {"loss_ce", "loss_sem", "loss_con"} <= set(summary)


# ---- OFFICIAL, switch by switch: what each one changes on its own (docs/DEVIATIONS.md) -----------------
def seeded(compute):
    """``compute()`` with Python, NumPy and torch reseeded, so two trainers draw the same views."""
    set_random_seed(0)
    return compute()


def fixed_primitives(trainer) -> torch.Tensor:
    backbone = trainer.backbone
    return torch.randn(2, backbone.num_vision_layers, backbone.text_width, generator=torch.Generator().manual_seed(0))


def views_share_prompts(trainer, batch, monkeypatch):
    text = trainer.model.text_features([fixed_primitives(trainer)] * 2, ["orig", "moco"])
    return close(text[0], text[1])


def tokens_are_identical(trainer, batch, monkeypatch):
    tokens = trainer.model.learnable.rho_for("orig")(fixed_primitives(trainer))
    return torch.equal(tokens[:, 0], tokens[:, -1])


def logits_after_projector_moved(trainer, batch, monkeypatch):
    """Logits once P_v has left its identity init (at identity, normalize(P_v(ẑ)) = ẑ either way)."""
    weight = trainer.model.learnable.image_projector.weight
    saved = weight.detach().clone()
    trainer.set_model_mode("eval")
    with torch.no_grad():
        weight.add_(0.1 * torch.randn(saved.shape, generator=torch.Generator().manual_seed(0)))
        logits = trainer.model(batch["img"]).logits
        weight.copy_(saved)
    return logits


def loss_terms(trainer, batch):
    trainer.set_model_mode("train")
    return seeded(lambda: trainer.compute_loss(batch)[1])


def augmix_views(trainer, batch, monkeypatch):
    return seeded(lambda: trainer.official_views(batch["img"], ["augmix"])[0])


def step_views(trainer, batch, monkeypatch):
    """The MoCo and AugMix images a training step feeds to CLIP."""
    return seeded(lambda: torch.cat(list(trainer.model_inputs(batch)[0][1].values())))


def moco_view(trainer, batch, monkeypatch):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    return seeded(lambda: trainer.train_transforms()[1](image))


def images_encoded_at_test(trainer, batch, monkeypatch):
    rows = []
    encode = trainer.backbone.encode_image
    monkeypatch.setattr(trainer.backbone, "encode_image", lambda x, **kw: rows.append(len(x)) or encode(x, **kw))
    trainer.set_model_mode("eval")
    with torch.no_grad():
        seeded(lambda: trainer.model_inference(batch["img"]))
    return sum(rows)


def evaluated_after_an_epoch(trainer, batch, monkeypatch):
    """What ``after_epoch`` of a middle epoch tests and saves."""
    events = []
    monkeypatch.setattr(trainer, "test", lambda split=None: events.append(f"test {split}") or 50.0)
    monkeypatch.setattr(trainer, "save_model", lambda *args, model_name="", **kw: events.append(f"save {model_name}"))
    trainer.epoch = 0
    trainer.after_epoch()
    return events


# switch → the output it governs, as a function of (trainer, batch, monkeypatch)
SWITCH_EFFECTS = {
    "RHO_PER_VIEW": views_share_prompts,
    "RHO_TOKENWISE": tokens_are_identical,
    "PV_IN_LOGITS": logits_after_projector_moved,
    "PV_INIT": lambda trainer, batch, _: loss_terms(trainer, batch)["loss_con"],
    "W_CON": lambda trainer, batch, _: loss_terms(trainer, batch)["loss"],
    "SEM_DIST": lambda trainer, batch, _: loss_terms(trainer, batch)["loss_sem"],
    "AUGMIX_FIRST_IMAGE_ONLY": augmix_views,  # the views made from the batch tensor (AUG_INPUT official, test)
    "AUG_INPUT": step_views,
    "MOCO_NORM": moco_view,
    "TEST_BRANCHES": images_encoded_at_test,
    "SELECT_ON_TEST": evaluated_after_an_epoch,
}


@pytest.fixture(scope="module")
def pristine(kit, tmp_path_factory):
    """(default trainer, one training batch), never trained: the reference every switch is flipped against."""
    trainer = make_trainer(kit, tmp_path_factory.mktemp("pristine"), "GOPro", "vit_b16",
                           "DATALOADER.TRAIN_X.BATCH_SIZE", "4")
    return trainer, one_batch(trainer)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to rounding (the suite's one tolerance rule, tests/numerics.py)."""
    return bool((a - b).abs().max() <= tolerance(a, b))


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return a.shape == b.shape and close(a, b)
    return a == b


def test_official_switches_are_exactly_those_that_differ_and_each_has_a_probe(pristine):
    defaults = pristine[0].options
    differing = {key for key, value in OFFICIAL_SWITCHES.items() if defaults[key] != value}
    assert differing == set(SWITCH_EFFECTS)
    assert {"W_CE", "W_SEM"} == set(OFFICIAL_SWITCHES) - differing  # official = default, pinned all the same


@pytest.mark.parametrize("switch", sorted(SWITCH_EFFECTS))
def test_each_official_switch_alone_changes_the_output_it_governs(kit, tmp_path, pristine, monkeypatch, switch):
    default, batch = pristine
    value = OFFICIAL_SWITCHES[switch]
    flipped = make_trainer(kit, tmp_path, "GOPro", "vit_b16", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
                           f"TRAINER.GOPRO.{switch}", str(value))
    assert flipped.options[switch] == value
    assert all(flipped.options[k] == default.options[k] for k in OFFICIAL_SWITCHES if k != switch)
    probe = SWITCH_EFFECTS[switch]
    assert not same(probe(default, batch, monkeypatch), probe(flipped, batch, monkeypatch))


def test_official_pv_init_is_nn_linear_default_and_draws_nothing_else(kit, tmp_path, pristine):
    default = dict(pristine[0].model.learnable.named_parameters())
    flipped = make_trainer(kit, tmp_path, "GOPro", "vit_b16", "TRAINER.GOPRO.PV_INIT", "default")
    state = dict(flipped.model.learnable.named_parameters())
    weight, bias = state["image_projector.weight"], state["image_projector.bias"]
    bound = weight.shape[1] ** -0.5  # kaiming_uniform(a=√5) and the bias: U(±1/√fan_in)
    assert weight.abs().max() <= bound and bias.abs().max() <= bound
    assert weight.std() > bound / 3 and bias.abs().max() > bound / 2  # drawn, not zero or identity
    assert torch.equal(default["image_projector.weight"], torch.eye(len(weight)))
    # The identity init draws the same numbers before overwriting them: every other parameter is unchanged.
    for key, value in state.items():
        if not key.startswith("image_projector."):
            assert torch.equal(value, default[key]), key


def test_bad_switch_values_are_rejected_with_the_key(kit, tmp_path):
    with pytest.raises(ValueError, match="TRAINER.GOPRO.SEM_DIST"):
        make_trainer(kit, tmp_path, "GOPro", "vit_b16", "TRAINER.GOPRO.SEM_DIST", "cosine")
    cfg_node = make_trainer(kit, tmp_path / "b", "GOPro", "vit_b16").cfg.TRAINER.GOPRO
    assert GOPro.resolve_options(cfg_node).SEM_DIST == "sqeuclid"


def test_checkpoint_round_trip_restores_identical_predictions(kit, tmp_path):
    first = make_trainer(kit, tmp_path / "run", "GOPro", "vit_b16")
    with torch.no_grad():
        first.model.learnable.prompt_learner.ctx.add_(0.1)
        first.model.learnable.image_projector.weight.mul_(1.5)
    first.save_model(0, str(tmp_path / "run"))
    second = make_trainer(kit, tmp_path / "eval", "GOPro", "vit_b16")
    second.load_model(str(tmp_path / "run"), epoch=1)
    images = torch.randn(3, 3, 32, 32)
    first.set_model_mode("eval"), second.set_model_mode("eval")
    with torch.no_grad():
        assert_close(second.model(images).logits, first.model(images).logits, what="logits after a checkpoint round trip")


def official_layout(trainer) -> dict:
    """A GOPro prompter's weights as the official code saves them (D3, docs/DEVIATIONS.md): the whole
    CustomCLIP, one nn.Linear per layer, one Linear(L→1) ρ, fp16 ctx, an unused meta_net,
    simproj = Sequential(Linear, BatchNorm1d), frozen CLIP and class buffers included."""
    ours = trainer.model.learnable.state_dict()
    state = {"prompt_learner.ctx": ours["prompt_learner.ctx"].half(),
             "prompt_learner.token_prefix": ours["prompt_learner.token_prefix"],
             "prompt_learner.meta_net.linear1.weight": torch.randn(32, 64),
             "prompt_learner.rho.weight": ours["rho.shared.mix.weight"],
             "prompt_learner.rho.bias": ours["rho.shared.mix.bias"],
             "image_encoder.conv1.weight": torch.randn(8, 3, 4, 4), "logit_scale": torch.tensor(4.6)}
    for part in ("style", "content"):
        for layer, (weight, bias) in enumerate(zip(ours[f"{part}.proj.weight"], ours[f"{part}.proj.bias"])):
            state[f"prompt_learner.{part}.linear.{layer}.weight"] = weight
            state[f"prompt_learner.{part}.linear.{layer}.bias"] = bias
    for name in ("weight", "bias"):
        state[f"simproj.0.{name}"] = ours[f"image_projector.{name}"]
    for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        state[f"simproj.1.{name}"] = ours[f"contrastive_bn.{name}"]
    return state


def test_official_checkpoints_load_and_predict_like_the_model_that_wrote_them(kit, tmp_path):
    official = make_trainer(kit, tmp_path / "official", "GOPro", "vit_b16_official")
    with torch.no_grad():
        for p in official.model.learnable.parameters():
            p.add_(0.05 * torch.randn_like(p))
        ctx = official.model.learnable.prompt_learner.ctx
        ctx.copy_(ctx.half().float())  # the official ctx is an fp16 parameter (D19, docs/DEVIATIONS.md)
    folder = tmp_path / "released" / "gopro"
    folder.mkdir(parents=True)
    torch.save({"state_dict": official_layout(official), "epoch": 50, "optimizer": None, "scheduler": None},
               folder / "model-best.pth.tar")
    images = torch.randn(3, 3, 32, 32)
    official.set_model_mode("eval")
    with torch.no_grad():
        expected = official.model(images).logits

    # Same config; and our default model with raw CLIP features in the logits, where the official
    # shared ρ becomes three token-wise heads (exact: the official M tokens are identical).
    for name, opts in (("same", ()), ("ours", ("TRAINER.GOPRO.PV_IN_LOGITS", "False"))):
        config = "vit_b16_official" if name == "same" else "vit_b16"
        loaded = make_trainer(kit, tmp_path / name, "GOPro", config, *opts)
        loaded.load_model(str(tmp_path / "released"))
        loaded.set_model_mode("eval")
        with torch.no_grad():
            assert_close(loaded.model(images).logits, expected, what=f"logits of the official checkpoint ({name})")

    with pytest.raises(ValueError, match="official config.*PV_IN_LOGITS False"):
        make_trainer(kit, tmp_path / "default", "GOPro", "vit_b16").load_model(str(tmp_path / "released"))
    state = {k: v for k, v in official_layout(official).items() if not k.startswith("simproj.1.")}
    torch.save({"state_dict": state, "epoch": 50}, folder / "model-best.pth.tar")
    with pytest.raises(RuntimeError, match="simproj = Linear \\+ BatchNorm1d"):
        loaded.load_model(str(tmp_path / "released"))


def test_official_base_checkpoint_evaluates_new_classes_with_their_own_names(kit, tmp_path):
    """The official load_model keeps the base classes' token buffers (its filter misses the
    ``prompt_learner.`` prefix); ours drops them and builds the evaluated classes' own."""
    base = make_trainer(kit, tmp_path / "base", "GOPro", "vit_b16_official", "DATASET.SUBSAMPLE_CLASSES", "base")
    with torch.no_grad():
        for p in base.model.learnable.parameters():
            p.add_(0.05 * torch.randn_like(p))
        ctx = base.model.learnable.prompt_learner.ctx
        ctx.copy_(ctx.half().float())  # saved as the official fp16 parameter
    state = official_layout(base)
    state["prompt_learner.token_suffix"] = base.model.learnable.prompt_learner.token_suffix
    folder = tmp_path / "released" / "gopro"
    folder.mkdir(parents=True)
    torch.save({"state_dict": state, "epoch": 50}, folder / "model-best.pth.tar")

    opts = ("DATASET.SUBSAMPLE_CLASSES", "new")
    expected = make_trainer(kit, tmp_path / "expected", "GOPro", "vit_b16_official", *opts)
    learned = {k: v for k, v in base.model.learnable.state_dict().items() if "token_" not in k}
    expected.model.learnable.load_state_dict(learned, strict=False)
    loaded = make_trainer(kit, tmp_path / "new", "GOPro", "vit_b16_official", *opts)
    loaded.load_model(str(tmp_path / "released"))
    assert (base.num_classes, loaded.num_classes) == (3, 2)
    images = torch.randn(3, 3, 32, 32)
    expected.set_model_mode("eval"), loaded.set_model_mode("eval")
    with torch.no_grad():
        logits = loaded.model(images).logits
        assert logits.shape == (3, 2)
        torch.testing.assert_close(logits, expected.model(images).logits)


@pytest.mark.slow
def test_base2new_scripts_end_to_end_on_an_odd_number_of_classes(kit, tmp_path):
    env = {"DATA": str(kit.data), "OUTPUT": str(tmp_path), "EPOCHS": "2", "EXTRA_OPTS": " ".join(kit.opts())}
    train = run_script("gopro/base2new_train.sh", "oxford_pets", "1", env=env)
    test = run_script("gopro/base2new_test.sh", "oxford_pets", "1", env=env)
    base_log = tmp_path / "base2new/train_base/oxford_pets/shots_16/GOPro/vit_b16/seed1/log.txt"
    new_log = tmp_path / "base2new/test_new/oxford_pets/shots_16/GOPro/vit_b16/seed1/log.txt"
    base_text, new_text = base_log.read_text(), new_log.read_text()
    assert "Finish training" in base_text and len(accuracies(base_text)) == 1
    assert "# classes  3" in base_text and "# classes  2" in new_text  # 5 classes: base 3, new 2
    assert len(accuracies(new_text)) == 1
    again = run_script("gopro/base2new_train.sh", "oxford_pets", "1", env=env)
    assert "skip this job" in again.stdout
    assert train.returncode == test.returncode == 0
