"""PromptKD: the KD loss by hand, the transductive data (the student sees unlabeled images of all
classes; the teacher's own base-to-new runs are unchanged), the exported teacher (its logits are the
teacher run's), class rows by name, upstream checkpoint keys, checks of the teacher record, and the
teacher's digest in the student's run identity. The scripts' end-to-end run: test_promptkd_e2e.py."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from conftest import REPO, accuracies, build_cfg, make_trainer, run_train, train_teacher
from numerics import assert_close
from tools.kit.build import TINY_LAYERS

B2N = "vit_b16_c2_ep20_batch8_4+4ctx"
TEACHER_CFG = "vit_l14_c2_ep20_batch8_4+4ctx"
DEPTHS = ["TRAINER.PROMPTKD.PROMPT_DEPTH_TEXT", str(TINY_LAYERS),
          "TRAINER.PROMPTKD.PROMPT_DEPTH_VISION", str(TINY_LAYERS)]
BASE, NEW = ["DATASET.SUBSAMPLE_CLASSES", "base"], ["DATASET.SUBSAMPLE_CLASSES", "new"]


@pytest.fixture(scope="module")
def teacher_run(kit, tmp_path_factory) -> Path:
    """This module's own teacher run (some tests here replace its export)."""
    return train_teacher(kit, tmp_path_factory.mktemp("teacher") / "run")


def student(kit, path, teacher_run, *opts):
    return make_trainer(kit, path, "PromptKD", B2N, *DEPTHS, "TRAINER.PROMPTKD.TEACHER_RUN", str(teacher_run), *opts)


@pytest.fixture(scope="module")
def base_student(kit, teacher_run, tmp_path_factory):
    return student(kit, tmp_path_factory.mktemp("student"), teacher_run, *BASE)


def labels_of(loader) -> set:
    return {int(y) for batch in loader for y in batch["label"]}


# ---- configs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("config, depth, kd_weight", [
    (B2N, 9, 1000.0), (f"{B2N}_kd200", 9, 200.0), ("vit_b16_c2_ep20_batch8_4+4ctx_cross_datasets", 3, 1000.0)])
def test_shipped_configs_have_upstreams_hyper_parameters(kit, tmp_path, config, depth, kd_weight):
    cfg = build_cfg(kit, tmp_path, "PromptKD", config)
    node = cfg.TRAINER.PROMPTKD
    assert (cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == (0.005, 20, 8)
    assert (node.N_CTX_TEXT, node.N_CTX_VISION, node.CTX_INIT, node.PREC) == (4, 4, "a photo of a", "fp16")
    assert (node.TEACHER_NAME, node.PROJECT_LAYER, node.CE_WEIGHT, node.KD_WEIGHT, node.TEMPERATURE) == (
        "ViT-L/14", 2, 0.0, kd_weight, 1.0)
    with open(REPO / "configs/trainers/PromptKD" / f"{config}.yaml") as f:  # the depth before the kit lowers it
        assert f"PROMPT_DEPTH_VISION: {depth}" in f.read()
    teacher = build_cfg(kit, tmp_path, "PromptSRC", TEACHER_CFG)
    assert (teacher.MODEL.BACKBONE.NAME, teacher.OPTIM.LR, teacher.DATALOADER.TRAIN_X.BATCH_SIZE) == ("ViT-L/14", 0.005, 8)


def test_the_registry_runs_upstreams_kd_weight_per_dataset_and_marks_the_regime():
    from runs.methods import METHODS

    method = METHODS["promptkd"]
    assert {d: method.cfg("b2n", d) for d in ("dtd", "fgvc_aircraft", "oxford_flowers", "eurosat")} == {
        "dtd": f"{B2N}_kd200", "fgvc_aircraft": f"{B2N}_kd200", "oxford_flowers": f"{B2N}_kd200", "eurosat": B2N}
    assert method.tags == ("transductive", "teacher ViT-L/14")
    assert (method.teacher.method, method.teacher.cfg) == ("promptsrc", TEACHER_CFG)


def test_the_steps_train_the_teacher_first_and_hand_its_folder_to_the_student(tmp_path):
    from runs import steps

    env = {"OUTPUT": str(tmp_path), "DATA": "D"}
    teacher, student = steps.command_runs(["bash", "scripts/promptkd/base2new_train.sh", "dtd", "1"], env)
    (test,) = steps.command_runs(["bash", "scripts/promptkd/base2new_test.sh", "dtd", "1"], env)
    (alone,) = steps.command_runs(["bash", "scripts/promptkd/teacher_train.sh", "dtd", "1"], env)
    assert teacher == alone and teacher.folder == tmp_path / "base2new/train_base/dtd/shots_16/PromptSRC" / TEACHER_CFG / "seed1"
    value = lambda run, flag: run.argv[run.argv.index(flag) + 1]  # noqa: E731
    assert (value(teacher, "--trainer"), value(teacher, "DATASET.SUBSAMPLE_CLASSES")) == ("PromptSRC", "base")
    for run in (student, test):
        assert value(run, "--trainer") == "PromptKD" and value(run, "TRAINER.PROMPTKD.TEACHER_RUN") == str(teacher.folder)
    assert Path(value(student, "--config-file")).stem == f"{B2N}_kd200"  # DTD: upstream's KD_WEIGHT 200
    assert value(test, "--model-dir") == str(student.folder) and value(test, "DATASET.SUBSAMPLE_CLASSES") == "new"
    with pytest.raises(RuntimeError, match="no step 'xd_train'.*teacher exported for each target"):
        steps.command_runs(["bash", "scripts/run.sh", "promptkd", "xd_train", "1"], env)



def test_backbone_is_the_students_and_the_teacher_keeps_its_own_unless_told(tmp_path):
    """BACKBONE moves the student (and only it) to another backbone's tree: the teacher stays the
    config's ViT-L/14 run, which students on every backbone share; TEACHER_BACKBONE moves the
    teacher, and tells the student which teacher backbone to expect. TEACHER_OPTS reach the teacher
    only, after EXTRA_OPTS (so they win)."""
    from runs import steps
    from runs.layout import backbone_folder

    student_backbone, teacher_backbone = "open_clip:ViT-B-16:laion2b_s34b_b88k", "ViT-L/14@336px"
    env = {"OUTPUT": str(tmp_path), "DATA": "D", "BACKBONE": student_backbone,
           "EXTRA_OPTS": "MODEL.BACKBONE.PATH student.bin", "TEACHER_OPTS": "MODEL.BACKBONE.PATH clip_folder"}

    def value(run, key):  # the value train.py takes: the last one given
        return run.argv[max(i for i, word in enumerate(run.argv) if word == key) + 1]

    teacher, student = steps.command_runs(["bash", "scripts/promptkd/base2new_train.sh", "dtd", "1"], env)
    assert "--backbone" not in teacher.argv and value(teacher, "MODEL.BACKBONE.PATH") == "clip_folder"
    assert teacher.folder == tmp_path / "base2new/train_base/dtd/shots_16/PromptSRC" / TEACHER_CFG / "seed1"
    assert value(student, "--backbone") == student_backbone and value(student, "MODEL.BACKBONE.PATH") == "student.bin"
    assert student.folder.is_relative_to(tmp_path / "backbone" / backbone_folder(student_backbone))
    assert value(student, "TRAINER.PROMPTKD.TEACHER_RUN") == str(teacher.folder)
    assert "TRAINER.PROMPTKD.TEACHER_NAME" not in student.argv  # its config's: the teacher config's ViT-L/14

    moved, student = steps.command_runs(["bash", "scripts/promptkd/base2new_train.sh", "dtd", "1"],
                                        {**env, "TEACHER_BACKBONE": teacher_backbone})
    assert value(moved, "--backbone") == teacher_backbone
    assert moved.folder == tmp_path / "backbone" / backbone_folder(teacher_backbone) / teacher.folder.relative_to(tmp_path)
    assert value(student, "TRAINER.PROMPTKD.TEACHER_RUN") == str(moved.folder)
    assert value(student, "TRAINER.PROMPTKD.TEACHER_NAME") == teacher_backbone
    from trainers.clip_backbone import OPEN_CLIP_PREFIX

    assert steps.OPEN_CLIP_TEACHER == OPEN_CLIP_PREFIX
    with pytest.raises(RuntimeError, match="TEACHER_BACKBONE=open_clip:ViT-L-14:x: .*OpenAI's clip package only"):
        steps.command_runs(["bash", "scripts/promptkd/base2new_train.sh", "dtd", "1"],
                           {**env, "TEACHER_BACKBONE": "open_clip:ViT-L-14:x"})
    with pytest.raises(RuntimeError, match="TEACHER_OPTS must be KEY VALUE pairs"):
        steps.command_runs(["bash", "scripts/promptkd/teacher_train.sh", "dtd", "1"], {**env, "TEACHER_OPTS": "A"})


# ---- the loss -------------------------------------------------------------------------------
def test_the_distillation_loss_equals_a_hand_computation():
    from trainers.promptkd import DistillationLoss, DistilledOutput

    g = torch.Generator().manual_seed(0)
    b, c, temperature, weight = 3, 4, 2.0, 1000.0
    s, s_t = 10 * torch.randn(b, c, generator=g, dtype=torch.float64), 10 * torch.randn(b, c, generator=g, dtype=torch.float64)
    loss, terms = DistillationLoss(weight, temperature)(DistilledOutput(s, teacher_logits=s_t), label=None)

    def softmax(row):
        exps = [math.exp(x / temperature) for x in row.tolist()]
        return [e / sum(exps) for e in exps]

    kl = 0.0
    for i in range(b):
        p, p_t = softmax(s[i]), softmax(s_t[i])
        kl += sum(p_t[j] * (math.log(p_t[j]) - math.log(p[j])) for j in range(c))
    hand = weight * temperature ** 2 * kl / (b * c)  # summed over batch and classes, divided by B·C
    assert_close(loss, torch.tensor(hand, dtype=torch.float64), what="KD loss")
    assert torch.equal(terms["loss_kd"], loss)
    with pytest.raises(ValueError, match="TEMPERATURE"):
        DistillationLoss(weight, 0.0)


def test_the_labels_never_reach_the_loss(base_student):
    batch = next(iter(base_student.train_loader_x))
    torch.manual_seed(0)
    loss, *_ = base_student.forward_loss(batch)
    torch.manual_seed(0)
    loss_garbage, *_ = base_student.forward_loss(dict(batch, label=torch.full_like(batch["label"], -7)))
    assert torch.equal(loss, loss_garbage) and loss.item() > 0


# ---- transductive data ------------------------------------------------------------------------
def test_the_student_distils_on_images_of_all_classes_but_is_tested_on_the_asked_ones(kit, base_student, tmp_path):
    assert labels_of(base_student.train_loader_x) == set(range(5))          # base and new classes
    assert base_student.dm.dataset.num_classes == 3                          # evaluation: base only
    assert labels_of(base_student.test_loader) == {0, 1, 2}
    teacher = make_trainer(kit, tmp_path, "PromptSRC", TEACHER_CFG, *BASE, "DATASET.NUM_SHOTS", "16")
    assert labels_of(teacher.train_loader_x) == {0, 1, 2}                    # the teacher: base classes only


def test_training_logits_span_all_classes_and_evaluation_the_asked_ones(kit, base_student, teacher_run, tmp_path):
    from trainers.promptkd import TEACHER_FILE, TeacherRecord

    record = TeacherRecord.load(str(teacher_run / TEACHER_FILE))
    image = next(iter(base_student.train_loader_x))["img"]
    base_student.set_model_mode("train")
    out = base_student.model(image)
    assert out.logits.shape == out.teacher_logits.shape == (len(image), 5)
    base_student.set_model_mode("eval")
    out = base_student.model(image)
    assert out.logits.shape == (len(image), 3) and out.teacher_logits is None
    assert torch.equal(out.text_features, record.text_features[:3])
    new_student = student(kit, tmp_path, teacher_run, *NEW)
    assert new_student.dm.dataset.classnames == record.classnames[3:]
    assert torch.equal(new_student.model.eval_text_features, record.text_features[3:])
    with pytest.raises(KeyError, match="no class"):
        record.rows(["no_such_class"])


def test_the_exported_teacher_gives_the_teacher_runs_own_logits(kit, base_student, teacher_run, tmp_path):
    """Features and image prompts read back from the export = the teacher trainer with its checkpoint."""
    teacher = make_trainer(kit, tmp_path, "PromptSRC", TEACHER_CFG, "DATASET.SUBSAMPLE_CLASSES", "all")
    teacher.load_model(str(teacher_run), 1)
    teacher.set_model_mode("eval")
    image = next(iter(base_student.train_loader_x))["img"]
    with torch.no_grad():
        expected = teacher.model(image).logits
    assert teacher.backbone.embed_dim == 48 and base_student.backbone.embed_dim == 32  # wide teacher, narrow student
    assert_close(base_student.model.teacher.logits(image), expected, what="exported teacher logits")


def test_only_the_students_prompts_and_projector_learn(base_student):
    learnable = {k for k, p in base_student.model.named_parameters() if p.requires_grad}
    assert learnable == {f"learnable.{k}" for k, _ in base_student.model.learnable.named_parameters()}
    assert all(k.startswith(("learnable.image_encoder.", "learnable.VPT_image_trans.")) for k in learnable)


# ---- checkpoints ------------------------------------------------------------------------------
def upstream_student_state(trainer) -> dict:
    """An upstream-layout student state dict: its whole CustomCLIP (frozen image tower and
    logit_scale included), the projector's convs in fp16 as upstream casts them."""
    generator = torch.Generator().manual_seed(5)
    state = {}
    for key, value in trainer.model.learnable.state_dict().items():
        if value.is_floating_point():
            conv = key.startswith(("VPT_image_trans.conv1.0.", "VPT_image_trans.conv1.3."))
            dtype = torch.float16 if conv else value.dtype
            state[key] = torch.randn(value.shape, generator=generator).to(dtype)
        else:
            state[key] = value.clone() + 3
    state.update({"image_encoder.conv1.weight": torch.zeros(64, 3, 8, 8), "logit_scale": torch.tensor(4.6),
                  "image_encoder.class_embedding": torch.zeros(64)})
    return state


def test_checkpoints_use_upstreams_keys(base_student):
    keys = set(base_student.model.learnable.state_dict())
    expected = {"image_encoder.VPT", *(f"image_encoder.transformer.resblocks.{j}.VPT_shallow" for j in range(1, TINY_LAYERS)),
                *(f"VPT_image_trans.conv1.0.{k}" for k in ("weight", "bias")),
                *(f"VPT_image_trans.conv1.1.{k}" for k in ("weight", "bias", "running_mean", "running_var",
                                                            "num_batches_tracked")),
                *(f"VPT_image_trans.conv1.3.{k}" for k in ("weight", "bias"))}
    assert keys == expected
    assert base_student.get_model_names() == ["VLPromptLearner"]
    assert base_student.model.learnable.state_dict()["VPT_image_trans.conv1.0.weight"].shape == (48, 32, 1, 1)


@pytest.mark.slow
def test_an_upstream_student_checkpoint_evaluates_here(kit, teacher_run, tmp_path):
    """Upstream's best-val file (model-best.pth.tar, the whole model) loads its learnable tensors
    and evaluates through train.py --eval-only (no --load-epoch: the best-val file, as upstream)."""
    trainer = student(kit, tmp_path / "build", teacher_run, *NEW)
    state = upstream_student_state(trainer)
    model_dir = tmp_path / "upstream"
    (model_dir / "VLPromptLearner").mkdir(parents=True)
    torch.save({"state_dict": state, "epoch": 20, "optimizer": None, "scheduler": None},
               model_dir / "VLPromptLearner" / "model-best.pth.tar")
    trainer.load_model(str(model_dir))
    for key, value in trainer.model.learnable.state_dict().items():
        assert torch.equal(value, state[key].to(value.dtype)), key
    proc = run_train("--root", str(kit.data), "--seed", "1", "--trainer", "PromptKD",
                     "--dataset-config-file", str(REPO / "configs/datasets/oxford_pets.yaml"),
                     "--config-file", str(REPO / "configs/trainers/PromptKD" / f"{B2N}.yaml"),
                     "--output-dir", str(tmp_path / "eval"), "--eval-only", "--model-dir", str(model_dir),
                     *kit.opts(), *DEPTHS, "TRAINER.PROMPTKD.TEACHER_RUN", str(teacher_run), *NEW)
    assert "# classes  2" in proc.stdout and len(accuracies(proc.stdout)) == 1


# ---- the teacher record and the run identity --------------------------------------------------
def test_a_bad_teacher_run_is_one_clear_error(kit, teacher_run, tmp_path):
    from trainers.promptkd import teacher_record

    cfg = build_cfg(kit, tmp_path, "PromptKD", B2N)
    with pytest.raises(ValueError, match="TEACHER_RUN is empty.*teacher_train.sh"):
        teacher_record(cfg, "", "ViT-L/14")
    with pytest.raises(FileNotFoundError, match="does not exist: train the teacher first"):
        teacher_record(cfg, str(tmp_path / "nowhere"), "ViT-L/14")
    with pytest.raises(FileNotFoundError, match="not a run folder of train.py"):
        teacher_record(cfg, str(tmp_path), "ViT-L/14")
    with pytest.raises(ValueError, match="uses backbone ViT-L/14, but TRAINER.PROMPTKD.TEACHER_NAME is ViT-B/16"):
        teacher_record(cfg, str(teacher_run), "ViT-B/16")


def test_a_student_exports_a_missing_or_outdated_teacher_record_itself(kit, teacher_run, tmp_path):
    """The same record as the command line's, and the random generators untouched by the export."""
    import random

    from trainers.promptkd import TEACHER_FILE, TeacherRecord, teacher_record

    exported = TeacherRecord.load(str(teacher_run / TEACHER_FILE))
    copy = tmp_path / "teacher"
    shutil.copytree(teacher_run, copy)
    (copy / TEACHER_FILE).unlink()
    torch.manual_seed(7)
    random.seed(7)
    expected_draws = (torch.rand(3), random.random())
    torch.manual_seed(7)
    random.seed(7)
    record = teacher_record(build_cfg(kit, tmp_path, "PromptKD", B2N), str(copy), "ViT-L/14")
    draws = (torch.rand(3), random.random())
    assert torch.equal(draws[0], expected_draws[0]) and draws[1] == expected_draws[1]
    assert (copy / TEACHER_FILE).is_file() and record.classnames == exported.classnames
    assert torch.equal(record.text_features, exported.text_features)
    assert record.image_prompts.keys() == exported.image_prompts.keys()
    assert all(torch.equal(record.image_prompts[k], exported.image_prompts[k]) for k in exported.image_prompts)
    identity = json.loads((copy / "run.json").read_text())
    (copy / "run.json").write_text(json.dumps(dict(identity, digest="0123456789ab")))  # the run was redone
    assert teacher_record(build_cfg(kit, tmp_path, "PromptKD", B2N), str(copy), "ViT-L/14").digest == "0123456789ab"
    assert TeacherRecord.load(str(copy / TEACHER_FILE)).digest == "0123456789ab"


def test_the_teachers_digest_not_its_path_is_part_of_the_students_identity(kit, teacher_run, tmp_path):
    from runs.identity import differences, settings_of

    key = "TRAINER.PROMPTKD.TEACHER_RUN"
    teacher_digest = json.loads((teacher_run / "run.json").read_text())["digest"]
    settings = settings_of(build_cfg(kit, tmp_path, "PromptKD", B2N, *DEPTHS, key, str(teacher_run), *BASE))
    assert settings[f"{key} digest"] == teacher_digest and key not in settings
    moved = tmp_path / "moved"
    shutil.copytree(teacher_run, moved)
    assert settings_of(build_cfg(kit, tmp_path, "PromptKD", B2N, *DEPTHS, key, str(moved), *BASE)) == settings
    identity = json.loads((moved / "run.json").read_text())
    (moved / "run.json").write_text(json.dumps(dict(identity, digest="0123456789ab")))
    redone = settings_of(build_cfg(kit, tmp_path, "PromptKD", B2N, *DEPTHS, key, str(moved), *BASE))
    assert [d.key for d in differences(settings, redone)] == [f"{key} digest"]
