"""CoPrompt: MaPLe's prompts with adapters, consistency with frozen CLIP on LLM-written class
descriptions (files in upstream's format, here the kit's generated ones) and on a second augmented
view; the loss by hand, the descriptions file's errors, upstream checkpoints (also through
``train.py --eval-only --model-dir``), the registry and the scripts end to end on the tiny kit."""
from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
import torch.nn.functional as F

from conftest import build_cfg, make_trainer
from numerics import assert_close
from test_baselines import one_batch, write_upstream_checkpoint
from test_modern_baselines import evaluate_upstream_checkpoint, parameters_a_step_changes, run_base2new_scripts
from runs.methods import METHODS
from tools.kit.build import DESCRIPTION_TEMPLATES
from trainers.coprompt import CoPrompt, ConsistencyLoss, ConsistencyOutput
from trainers.descriptions import default_path, read_descriptions, write_descriptions

CONFIG = "coprompt"
NAME = "MultiModalPromptLearner"
# Upstream's learnable keys on the tiny CLIP (D_t = D_v = 64, E = 32), N_CTX 2, depth 3 (the kit's).
UPSTREAM_SHAPES = {"prompt_learner.ctx": (2, 64), "prompt_learner.proj.weight": (64, 64), "prompt_learner.proj.bias": (64,),
                   **{f"prompt_learner.compound_prompts_text.{i}": (2, 64) for i in range(2)},
                   **{f"prompt_learner.compound_prompt_projections.{i}.weight": (64, 64) for i in range(2)},
                   **{f"prompt_learner.compound_prompt_projections.{i}.bias": (64,) for i in range(2)},
                   "adapter_image.fc.0.weight": (8, 32), "adapter_image.fc.2.weight": (32, 8),
                   "adapter_text.fc.0.weight": (8, 32), "adapter_text.fc.2.weight": (32, 8)}


@pytest.fixture(scope="module")
def trainer(kit, tmp_path_factory):
    return make_trainer(kit, tmp_path_factory.mktemp("coprompt"), "CoPrompt", CONFIG)


# ---- descriptions ---------------------------------------------------------------------------------
def test_the_kit_writes_descriptions_in_upstreams_format_where_coprompt_looks(kit, trainer):
    path = default_path(str(kit.data), "OxfordPets")
    assert path == str(kit.data / "gpt_file" / "oxford_pets_prompt.json")
    table = json.loads((kit.data / "gpt_file" / "oxford_pets_prompt.json").read_text())
    names = [n.replace("_", " ") for n in trainer.dm.dataset.classnames]
    assert sorted(table) == sorted(names)
    assert table[names[0]] == [t.format(names[0]) for t in DESCRIPTION_TEMPLATES]
    assert trainer.model.descriptions == [table[n] for n in names]


def test_a_missing_descriptions_file_is_one_error_naming_where_to_put_it(kit, tmp_path):
    missing = tmp_path / "nowhere.json"
    with pytest.raises(FileNotFoundError, match=rf"No class descriptions at {missing}\..*put the dataset's file there "
                                                r".*or set TRAINER\.COPROMPT\.DESCRIPTIONS"):
        make_trainer(kit, tmp_path / "run", "CoPrompt", CONFIG, "TRAINER.COPROMPT.DESCRIPTIONS", str(missing))


def test_incomplete_or_uneven_descriptions_are_refused(tmp_path):
    path = str(tmp_path / "d.json")
    write_descriptions(path, {"a_cat": ["x", "y"], "dog": ["z"]})
    assert json.loads(open(path).read())["a cat"] == ["x", "y"]
    with pytest.raises(ValueError, match=r"no entry for 1 classes, e\.g\. \['fish'\]"):
        read_descriptions(path, ["a_cat", "fish"], "KEY")
    with pytest.raises(ValueError, match=r"give \[1, 2\] descriptions per class"):
        read_descriptions(path, ["a_cat", "dog"], "KEY")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not readable JSON"):
        read_descriptions(str(tmp_path / "bad.json"), ["dog"], "KEY")


# ---- the model and the loss -----------------------------------------------------------------------
def test_features_are_maples_through_the_residual_adapters(trainer):
    model, learnable = trainer.model, trainer.model.learnable
    image, _ = trainer.parse_batch_train({"img": one_batch(trainer)["img"][0], "label": torch.zeros(1)})
    trainer.set_model_mode("eval")
    with torch.no_grad():
        out = model(image)
        v, t = model.visual_embedding(image), model.text_features()        # MaPLe's features
        adapter = lambda fc, x: F.relu(F.relu(x @ fc[0].weight.t()) @ fc[2].weight.t())  # noqa: E731
        v_hat = F.normalize(0.1 * adapter(learnable.adapter_image.fc, v) + 0.9 * v, dim=-1)
        t_hat = F.normalize(0.2 * adapter(learnable.adapter_text.fc, t) + 0.8 * t, dim=-1)
    assert_close(out.image_features, v_hat, what="CoPrompt image features")
    assert_close(out.text_features, t_hat, what="CoPrompt text features")
    assert out.zs_text_features is None and out.zs_image_features is None  # no teacher in evaluation


def test_loss_is_cross_entropy_plus_w_times_both_consistency_terms():
    out = ConsistencyOutput(logits=torch.tensor([[2.0, 0.0], [0.0, 0.0]]),
                            image_features=torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
                            zs_image_features=torch.tensor([[1.0, 0.0], [1.0, 0.0]]),    # cosines 1, 0
                            text_features=torch.tensor([[0.6, 0.8], [0.0, 1.0]]),
                            zs_text_features=torch.tensor([[1.0, 0.0], [0.0, 1.0]]))     # cosines 0.6, 1
    label = torch.tensor([0, 1])
    ce = (math.log(1 + math.exp(-2.0)) + math.log(2.0)) / 2
    loss, terms = ConsistencyLoss(2.0, "cosine")(out, label)
    assert terms["loss_ce"].item() == pytest.approx(ce, rel=1e-6)
    assert terms["loss_text"].item() == pytest.approx(2.0 * (1 - 0.8), rel=1e-6)
    assert terms["loss_image"].item() == pytest.approx(2.0 * 0.5, rel=1e-6)
    assert loss.item() == pytest.approx(ce + 0.4 + 1.0, rel=1e-6)
    _, terms = ConsistencyLoss(2.0, "mse")(out, label)
    assert terms["loss_text"].item() == pytest.approx(2.0 * (0.16 + 0.64) / 4, rel=1e-6)  # mean over 4 entries
    assert terms["loss_image"].item() == pytest.approx(2.0 * 2.0 / 4, rel=1e-6)


def test_a_step_uses_one_description_for_every_class_and_the_second_view(trainer):
    model = trainer.model
    batch = one_batch(trainer)
    (view1, view2), label = trainer.model_inputs(batch)
    assert not torch.equal(view1, view2)  # two RandAugment views of the same images
    trainer.set_model_mode("train")
    torch.manual_seed(3)
    out = model(view1, view2)
    torch.manual_seed(3)
    index = int(torch.randint(len(model.descriptions[0]), ()))
    with torch.no_grad():
        backbone = trainer.backbone
        expected = F.normalize(backbone.encode_tokens(backbone.tokenize([row[index] for row in model.descriptions])), dim=-1)
    assert_close(out.zs_text_features, expected, what="descriptions of the drawn index")
    assert_close(out.zs_image_features, model.frozen_embedding(view2), what="frozen CLIP on view 2")
    loss, terms = trainer.criterion(out, label)
    assert terms["loss_image"].item() > 0 and terms["loss_text"].item() > 0


def test_one_image_per_sample_is_refused_with_advice(kit, tmp_path):
    trainer = make_trainer(kit, tmp_path, "CoPrompt", CONFIG, "DATALOADER.K_TRANSFORMS", "1")
    with pytest.raises(ValueError, match="set DATALOADER.K_TRANSFORMS 2"):
        trainer.model_inputs(one_batch(trainer))


def test_upstreams_per_dataset_table_applies_unless_switched_off(kit, tmp_path):
    cfg = build_cfg(kit, tmp_path, "CoPrompt", CONFIG, "TRAINER.COPROMPT.DATASET_OPTIONS", "True")
    options = CoPrompt.method_options(cfg)
    assert (options.PROMPT_DEPTH, options.N_CTX, options.W) == (12, 2, 0.1)  # OxfordPets
    cfg = build_cfg(kit, tmp_path, "CoPrompt", CONFIG)  # the kit switches the table off (depth 12 > 3 blocks)
    assert (CoPrompt.method_options(cfg).N_CTX, CoPrompt.method_options(cfg).W) == (2, 1.0)


def test_only_prompts_and_adapters_learn_and_clip_stays_frozen(kit, tmp_path):
    trainer = make_trainer(kit, tmp_path, "CoPrompt", CONFIG)
    assert parameters_a_step_changes(trainer) == sorted(UPSTREAM_SHAPES)


# ---- checkpoints ----------------------------------------------------------------------------------
def test_checkpoint_has_upstream_name_keys_and_shapes(trainer, tmp_path):
    trainer.save_model(0, str(tmp_path))
    saved = torch.load(tmp_path / NAME / "model.pth.tar-1", weights_only=True)
    shapes = {k: tuple(v.shape) for k, v in saved["state_dict"].items()}
    assert shapes == {**UPSTREAM_SHAPES, "prompt_learner.token_prefix": (5, 1, 64), "prompt_learner.token_suffix": (5, 74, 64)}


def upstream_state() -> dict:
    """Upstream's whole-model file (fp16): learnable tensors, 3 other classes' buffers, frozen CLIP copies."""
    generator = torch.Generator().manual_seed(0)
    state = {k: (0.05 * torch.randn(shape, generator=generator)).half() for k, shape in UPSTREAM_SHAPES.items()}
    state.update({"prompt_learner.token_prefix": torch.zeros(3, 1, 64).half(),
                  "prompt_learner.token_suffix": torch.zeros(3, 74, 64).half(),
                  "image_encoder.conv1.weight": torch.zeros(64, 3, 8, 8).half(),
                  "model_distill.logit_scale": torch.tensor(4.6).half()})
    return state


def test_upstream_checkpoint_loads_its_learnable_tensors(trainer, tmp_path):
    state = upstream_state()
    write_upstream_checkpoint(tmp_path, NAME, 8, state)
    trainer.load_model(str(tmp_path), 8)
    loaded = trainer.model.learnable.state_dict()
    assert all(torch.equal(loaded[k], state[k].float()) for k in UPSTREAM_SHAPES)
    assert loaded["prompt_learner.token_prefix"].shape[0] == 5  # this run's classes are kept


def test_upstream_checkpoint_evaluates_with_eval_only_and_model_dir(kit, tmp_path):
    log = evaluate_upstream_checkpoint(kit, tmp_path, "CoPrompt", CONFIG, NAME, 8, upstream_state())
    assert str(tmp_path / "upstream" / NAME / "model.pth.tar-8") in log  # the upstream file is what was evaluated


# ---- registry and scripts -------------------------------------------------------------------------
def test_registry_entry_is_tagged_llm_text_with_upstreams_configs():
    method = METHODS["coprompt"]
    assert (method.trainer, method.b2n_cfg, method.xd_cfg, method.tags) == (
        "CoPrompt", "coprompt", "coprompt_cross_datasets", ("LLM text",))
    assert method.cfg("b2n", "food101") == "coprompt_food101"
    assert yaml.safe_load(method.config_path("coprompt_food101").read_text())["OPTIM"]["MAX_EPOCH"] == 5
    for cfg in ("coprompt", "coprompt_food101", "coprompt_cross_datasets"):
        assert method.config_path(cfg).is_file()


@pytest.mark.slow
def test_base2new_scripts_end_to_end(kit, tmp_path):
    base, _ = run_base2new_scripts(kit, tmp_path, "coprompt", "CoPrompt", CONFIG, NAME)
    assert "loss_text" in base and "loss_image" in base and "3 descriptions per class" in base
