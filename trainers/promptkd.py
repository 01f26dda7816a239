"""PromptKD (Li et al., CVPR 2024): unsupervised prompt distillation from a larger prompted CLIP.

A teacher (upstream: PromptSRC on ViT-L/14, trained on the base classes with labels) is frozen; its
text features of ALL classes of the dataset are computed once. The student is a ViT-B/16 CLIP with
IVLP-style prompts in the image tower only, plus a projector to the teacher's feature width; it has
no text side of its own, it classifies with the teacher's text features:

    v̂_s = normalize(P(f_v^s(x)))            P: 1x1 conv E_s→E_t, BatchNorm, ReLU, 1x1 conv E_t→E_t
    v̂_t = normalize(f_v^t(x))               the teacher's prompted image tower (frozen)
    s   = σ_s · v̂_s t̂ᵀ,  s_t = σ_t · v̂_t t̂ᵀ   t̂ [C_all, E_t]: the teacher's text features, σ = CLIP's scale
    L   = KD_WEIGHT · T² · Σ_{b,c} p_t (log p_t − log p_s) / (B·C),   p = softmax(· / T)

The student trains on the UNLABELED training images of all classes, base and new (transductive):
labels are never read. At test time its logits use the teacher's text features of the evaluated
classes (base or new), picked by class name.

The teacher comes from a run of this toolkit (``TRAINER.PROMPTKD.TEACHER_RUN``: its output folder).
Its export, ``teacher_features.pt`` in that folder (the text features of all classes, the teacher's
image prompts, its backbone and the digest of its run.json), is all the student reads besides the
teacher's CLIP weights. ``python -m tools.experiments.teacher_features RUN`` writes it; a student
whose teacher has none, or one exported from an earlier run in that folder, writes it first
(``export_teacher``: the teacher run's own trainer, rebuilt from its config.yaml for all classes,
with its last checkpoint; the random generators are left as they were).

Interfaces as upstream (zhengli97/PromptKD): trainer ``PromptKD``, node ``TRAINER.PROMPTKD`` with its
keys, registered module ``VLPromptLearner`` with upstream's keys (``image_encoder.VPT``,
``image_encoder.transformer.resblocks.<j>.VPT_shallow``, ``VPT_image_trans.conv1.{0,1,3}.*``), so an
upstream student checkpoint (the whole model, frozen CLIP included) evaluates here.

Where we depart from upstream, and why:

* **The teacher is a run folder, not ``./teacher_model/<Dataset>/VLPromptLearner/model-best.pth.tar``**
  with a hard-coded ViT-L/14 and depth 9: its backbone, prompt shapes and weights come from its run,
  its provenance goes into the student's run identity (the digest of its run.json). ``TEACHER_NAME``
  is checked against the run's backbone instead of choosing the file.
* **Teacher text features are computed once** (the export) rather than by the teacher's text tower
  at every step and every test batch: they do not change (the teacher is frozen), so the logits are
  the same and the ViT-L/14 text tower never runs during distillation.
* **Data**: upstream edits every dataset class (``TRAINER.MODAL base2novel``: train = all classes,
  val = base test, test = new test). Here the datasets stay shared and untouched: the trainer reads
  the training split with ``SUBSAMPLE_CLASSES all`` for its unlabeled loader and evaluates the classes
  the run asks for, so base and new are the usual two runs of the base-to-new protocol.
  ``TRAINER.MODAL`` does not exist here. The scripts pass ``SHOTS`` as for every method (16);
  upstream distils on every training image (``SHOTS=0``), which ``SHOTS=0`` reproduces.
* **Last epoch, not ``best_val``**: upstream selects the epoch with the best accuracy on the base
  classes' test images; we evaluate the last epoch, as every method here.
* **Precision**: the projector and the losses run in fp32 (upstream casts the projector's convs to
  fp16); both towers follow ``PREC`` as every trainer here (upstream: the teacher always fp16).
* ``TRAINER.PROMPTKD.TEACHER_RUN`` is ours: upstream's own train.py does not define it, so this
  trainer runs under our train.py only (upstream's trainer file needs its patched CLIP package anyway).
* ``CE_WEIGHT`` and ``PROJECT_LAYER`` are upstream keys its code never reads; here any other value
  than upstream's (0 and 2) is refused rather than silently ignored.
* Initial values: the student's prompts and projector are drawn in upstream's order (the student
  CLIP with prompts in both towers, the teacher CLIP, then the projector; CLIP constructions are
  replayed as for IVLP), so the same seed should give upstream's initial values. Unlike IVLP's, this
  has not been compared with an upstream run.
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import os.path as osp
import random
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dassl.data import DataManager
from dassl.engine import TRAINER_REGISTRY, build_trainer

from .clip_backbone import ClipBackbone, load_clip
from .deep_prompts import DeepPromptTower, check_depth
from .models import ModelOutput, PromptedCLIP, clip_logits
from .trainer_base import DeepPromptTrainer, add_prompt_keys
from .upstream_init import draw_prompts_in_upstream_order

TEACHER_FILE = "teacher_features.pt"  # written into the teacher's run folder by the export
IMAGE_PROMPTS = "image_encoder."       # key prefix of a teacher's image-tower prompts in its checkpoint


def extend_cfg(cfg) -> None:
    node = add_prompt_keys(cfg, "PROMPTKD", CTX_INIT="a photo of a", PREC="fp16", N_CTX_VISION=4, N_CTX_TEXT=4,
                           PROMPT_DEPTH_VISION=9, PROMPT_DEPTH_TEXT=9, TEACHER_NAME="ViT-L/14", PROJECT_LAYER=2,
                           CE_WEIGHT=0.0, KD_WEIGHT=1.0, TEMPERATURE=1.0, TEACHER_RUN="")
    del node["N_CTX"]  # text and vision tokens are counted separately


# --------------------------------------------------------------------------------------------
# The teacher: what the export stores, and the frozen model the student distils from
# --------------------------------------------------------------------------------------------
@dataclass
class TeacherRecord:
    """The contents of ``teacher_features.pt``: everything the student needs from a teacher run."""

    text_features: torch.Tensor            # [C_all, E_t] normalised, fp32, in label order
    classnames: List[str]                  # the C_all class names, in label order
    image_prompts: Dict[str, torch.Tensor]  # image_encoder.* tensors of its checkpoint (empty: none)
    prompt_shapes: Dict[str, List[int]]    # "vision" / "text": [tokens, depth] its CLIP was built with
    backbone: str                          # MODEL.BACKBONE.NAME of the teacher run
    backbone_path: str                     # its MODEL.BACKBONE.PATH ("" = found by name)
    run: str                               # the teacher's run folder
    digest: str                            # the digest of its run.json when exported
    epoch: int                             # the checkpoint epoch exported

    def save(self, path: str) -> None:
        """Written whole or not at all (a temporary file, then a rename)."""
        partial = f"{path}.partial"
        torch.save(dict(vars(self)), partial)
        os.replace(partial, path)

    @classmethod
    def load(cls, path: str) -> "TeacherRecord":
        return cls(**torch.load(path, map_location="cpu", weights_only=True))

    def rows(self, classnames: Sequence[str]) -> torch.Tensor:
        """The text features of ``classnames`` [C, E_t]; KeyError naming those the teacher lacks."""
        index = {name: i for i, name in enumerate(self.classnames)}
        missing = [name for name in classnames if name not in index]
        if missing:
            raise KeyError(f"The teacher's text features ({self.run}) have no class {missing[:5]}: they cover "
                           f"{len(self.classnames)} classes of its own dataset. Distil and evaluate on that "
                           f"dataset, or export a teacher trained on this one.")
        return self.text_features[[index[name] for name in classnames]]


def run_digest(folder: str) -> Optional[str]:
    """The digest in a run folder's run.json (None when it has none)."""
    path = osp.join(folder, "run.json")
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f).get("digest")


@contextlib.contextmanager
def random_state_kept() -> Iterator[None]:
    """Run a block without moving torch's, NumPy's or Python's generators (an export inside a
    student's build must not change the student's initial values or data order)."""
    python, numpy = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)


def export_teacher(template, folder: str, epoch: Optional[int] = None) -> TeacherRecord:
    """Build the trainer of teacher run ``folder`` from its config.yaml (merged into ``template``, a
    config with every key, e.g. the student's) for ALL classes, load its checkpoint of ``epoch``
    (default: its last, ``OPTIM.MAX_EPOCH``) and write its record; returns it."""
    digest = run_digest(folder)
    if digest is None or not osp.isfile(osp.join(folder, "config.yaml")):
        raise FileNotFoundError(f"{folder} is not a run folder of train.py (no run.json and config.yaml): give the "
                                f"output folder of the teacher's training run.")
    cfg = template.clone()
    cfg.defrost()
    cfg.merge_from_file(osp.join(folder, "config.yaml"))
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"
    cfg.freeze()
    epoch = cfg.OPTIM.MAX_EPOCH if epoch is None else epoch
    print(f"Exporting teacher {folder} ({cfg.TRAINER.NAME}, {cfg.MODEL.BACKBONE.NAME}, epoch {epoch}), all classes")
    with random_state_kept():
        trainer = build_trainer(cfg)
        model = trainer.model
        if not hasattr(model, "text_features"):
            raise ValueError(f"Trainer {cfg.TRAINER.NAME} has image-conditioned class prompts (no text_features()): "
                             f"a teacher needs one set of class features (PromptSRC, IVLP, CoOp ...).")
        trainer.load_model(folder, epoch)
        trainer.set_model_mode("eval")
        with torch.no_grad():
            text_features = model.text_features().float().cpu()
    node = cfg.TRAINER.get(getattr(trainer, "CFG_NODE", ""), {})
    record = TeacherRecord(
        text_features=text_features, classnames=list(trainer.dm.dataset.classnames),
        image_prompts={k: v.detach().float().cpu() for k, v in model.learnable.state_dict().items()
                       if k.startswith(IMAGE_PROMPTS)},
        prompt_shapes={tower: [int(node.get(f"N_CTX_{key}", 0)), int(node.get(f"PROMPT_DEPTH_{key}", 0))]
                       for tower, key in (("vision", "VISION"), ("text", "TEXT"))},
        backbone=cfg.MODEL.BACKBONE.NAME, backbone_path=osp.abspath(cfg.MODEL.BACKBONE.PATH) if
        cfg.MODEL.BACKBONE.PATH else "", run=osp.abspath(folder), digest=digest, epoch=int(epoch))
    del trainer, model
    gc.collect()
    record.save(osp.join(folder, TEACHER_FILE))
    print(f"Teacher features of {len(record.classnames)} classes -> {osp.join(folder, TEACHER_FILE)}")
    return record


def is_current(folder: str) -> bool:
    """Whether ``folder`` holds a record exported from the run it holds now (run.json's digest)."""
    path = osp.join(folder, TEACHER_FILE)
    return osp.isfile(path) and TeacherRecord.load(path).digest == run_digest(folder)


def teacher_record(template, folder: str, expected_backbone: str) -> TeacherRecord:
    """The teacher record of run ``folder`` (exported first where missing or outdated), checked:
    the teacher's backbone is the configured ``TEACHER_NAME``."""
    if not folder:
        raise ValueError("TRAINER.PROMPTKD.TEACHER_RUN is empty: set it to the output folder of a teacher run "
                         "(scripts/promptkd/teacher_train.sh).")
    if not osp.isdir(folder):
        raise FileNotFoundError(f"TRAINER.PROMPTKD.TEACHER_RUN={folder!r} does not exist: train the teacher first "
                                f"(scripts/promptkd/teacher_train.sh DATASET SEED).")
    if is_current(folder):
        record = TeacherRecord.load(osp.join(folder, TEACHER_FILE))
    else:
        record = export_teacher(template, folder)
    if record.backbone != expected_backbone:
        raise ValueError(f"The teacher run {folder} uses backbone {record.backbone}, but TRAINER.PROMPTKD."
                         f"TEACHER_NAME is {expected_backbone}: point TEACHER_RUN at a {expected_backbone} "
                         f"teacher or set TEACHER_NAME {record.backbone}.")
    return record


class FrozenTeacher(nn.Module):
    """The teacher's prompted image tower and its text features of all classes (nothing learns)."""

    def __init__(self, backbone: ClipBackbone, record: TeacherRecord):
        super().__init__()
        self.backbone = backbone
        prompts = [record.image_prompts[k] for k in teacher_prompt_keys(record.image_prompts)]
        self.image_prompts = DeepPromptTower(prompts, shallow=True) if prompts else None
        self.requires_grad_(False)
        self.register_buffer("text_features", record.text_features.float(), persistent=False)   # [C_all, E_t]

    @torch.no_grad()
    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """s_t = σ_t · v̂_t t̂ᵀ over all classes [B, C_all]."""
        tower = self.image_prompts
        prompts = {} if tower is None else dict(shallow_prompts=tower.shallow_prompts(),
                                                deep_prompts=tower.deep_prompts())
        features = F.normalize(self.backbone.encode_image(image, **prompts).features, dim=-1)
        return clip_logits(self.backbone, features, self.text_features)


def teacher_prompt_keys(image_prompts: Dict[str, torch.Tensor]) -> List[str]:
    """``image_encoder.VPT`` first, then the blocks' ``VPT_shallow`` in block order."""
    def block(key: str) -> int:
        return int(key.split(".")[-2]) if key.endswith("VPT_shallow") else 0
    return sorted(image_prompts, key=block)


# --------------------------------------------------------------------------------------------
# The student
# --------------------------------------------------------------------------------------------
class FeatureProjector(nn.Module):
    """Upstream's two-layer projector E_s → E_t (1x1 convs on a 1x1 map: two linear layers with
    BatchNorm and ReLU between), kept as convs so that upstream's ``conv1.*`` tensors load as they are."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_dim, out_dim, 1), nn.BatchNorm2d(out_dim), nn.ReLU(inplace=True),
                                   nn.Conv2d(out_dim, out_dim, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.conv1(features[:, :, None, None]).flatten(1)


class StudentPrompts(nn.Module):
    """The registered ``VLPromptLearner``: image-tower prompts and the projector (upstream names)."""

    def __init__(self, image_encoder: DeepPromptTower, projector: FeatureProjector):
        super().__init__()
        self.image_encoder = image_encoder
        self.VPT_image_trans = projector


@dataclass
class DistilledOutput(ModelOutput):
    """The student's output; in training steps also the teacher's logits over all classes."""

    teacher_logits: Optional[torch.Tensor] = None   # s_t [B, C_all] (no grad)


class PromptKDCLIP(PromptedCLIP):
    """The student: prompted ViT image tower + projector, scored against the teacher's text features
    (all classes in training, the evaluated ``classnames`` otherwise)."""

    def __init__(self, backbone: ClipBackbone, learnable: StudentPrompts, teacher: FrozenTeacher,
                 eval_text_features: torch.Tensor):
        super().__init__(backbone, learnable)
        self.teacher = teacher
        self.register_buffer("eval_text_features", eval_text_features.float(), persistent=False)  # [C, E_t]

    def raw_image_features(self, image: torch.Tensor) -> torch.Tensor:
        tower = self.learnable.image_encoder
        features = self.backbone.encode_image(image, shallow_prompts=tower.shallow_prompts(),
                                              deep_prompts=tower.deep_prompts()).features
        return self.learnable.VPT_image_trans(features)                                            # [B, E_t]

    def forward(self, image: torch.Tensor) -> DistilledOutput:
        image_features = self.visual_embedding(image)
        if not self.learning:
            text = self.eval_text_features
            return DistilledOutput(clip_logits(self.backbone, image_features, text), image_features, text)
        text = self.teacher.text_features
        return DistilledOutput(clip_logits(self.backbone, image_features, text), image_features, text,
                               teacher_logits=self.teacher.logits(image))


class DistillationLoss(nn.Module):
    """KD_WEIGHT · T² · KL(softmax(s_t/T) ‖ softmax(s/T)) summed over batch and classes / (B·C).
    The labels are not read: the images are unlabeled."""

    def __init__(self, weight: float, temperature: float):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"TRAINER.PROMPTKD.TEMPERATURE must be > 0, got {temperature}")
        self.weight = weight
        self.temperature = temperature

    def forward(self, out: DistilledOutput, label=None) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        t = self.temperature
        kl = F.kl_div(F.log_softmax(out.logits / t, dim=-1), F.log_softmax(out.teacher_logits / t, dim=-1),
                      reduction="sum", log_target=True)
        loss = self.weight * kl * t * t / out.logits.numel()
        return loss, {"loss_kd": loss}


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------
@TRAINER_REGISTRY.register()
class PromptKD(DeepPromptTrainer):
    CFG_NODE = "PROMPTKD"
    MODEL_NAME = "VLPromptLearner"
    CHOICES = {"CE_WEIGHT": (0, 0.0), "PROJECT_LAYER": (2,)}

    def build_data_loader(self):
        """The evaluated classes as asked (``SUBSAMPLE_CLASSES``); training images of all classes."""
        super().build_data_loader()
        self.train_loader_x = self.unlabeled_train_loader()

    def unlabeled_train_loader(self):
        cfg = self.cfg.clone()
        cfg.defrost()
        cfg.DATASET.SUBSAMPLE_CLASSES = "all"
        cfg.freeze()
        print("PromptKD distils on the training images of all classes, unlabeled (transductive):")
        return DataManager(cfg, custom_tfm_train=self.train_transforms()).train_loader_x

    def build_clip_model(self, backbone: ClipBackbone, classnames: Sequence[str]) -> nn.Module:
        options = self.options
        record = teacher_record(self.cfg, options.TEACHER_RUN, options.TEACHER_NAME)
        check_depth(options.PROMPT_DEPTH_VISION, backbone, "TRAINER.PROMPTKD.PROMPT_DEPTH_VISION")
        # Upstream builds, in this order: the student's CLIP (prompts in both towers, the text ones
        # unused), the teacher's CLIP, then the projector. Same draws here, same seed, same values.
        vision, _ = draw_prompts_in_upstream_order(
            backbone, self.rng_before_clip, (options.N_CTX_VISION, options.PROMPT_DEPTH_VISION),
            (options.N_CTX_TEXT, options.PROMPT_DEPTH_TEXT))
        teacher = FrozenTeacher(self.teacher_backbone(record), record)
        projector = FeatureProjector(backbone.embed_dim, teacher.backbone.embed_dim)
        print(f"PromptKD: {len(vision)} vision prompt tensors of {options.N_CTX_VISION} tokens; teacher "
              f"{record.backbone} from {record.run} (run {record.digest}, epoch {record.epoch}); projector "
              f"{backbone.embed_dim} -> {teacher.backbone.embed_dim}")
        return PromptKDCLIP(backbone, StudentPrompts(DeepPromptTower(vision, shallow=True), projector), teacher,
                            record.rows(classnames))

    def teacher_backbone(self, record: TeacherRecord) -> ClipBackbone:
        """The teacher's frozen CLIP, built with upstream's draws (its prompts come from the record)."""
        rng_before = torch.get_rng_state()
        teacher = ClipBackbone(load_clip(record.backbone, record.backbone_path), precision=self.options.PREC,
                               device=self.device)
        draw_prompts_in_upstream_order(teacher, rng_before, tuple(record.prompt_shapes["vision"]),
                                       tuple(record.prompt_shapes["text"]))
        return teacher

    def build_criterion(self) -> DistillationLoss:
        return DistillationLoss(self.options.KD_WEIGHT, self.options.TEMPERATURE)

    @staticmethod
    def summarize(loss, terms, output: DistilledOutput, label) -> Dict[str, float]:
        """The loss and how often the student's top class is the teacher's (the labels are unused)."""
        agree = (output.logits.argmax(-1) == output.teacher_logits.argmax(-1)).float().mean()
        return {"loss": loss.item(), **{k: v.item() for k, v in terms.items()}, "agree": 100.0 * agree.item()}
