"""MMRL (Guo, Gu, CVPR 2025): multi-modal representation learning.

A shared learnable representation space R [K, d_r] (K = N_REP_TOKENS, d_r = REP_DIM) is projected,
per block l of REP_LAYERS (1-based, upstream ViT-B/16: 6..12), into K representation tokens of each
tower, r_l^v = W_l^v R + b_l^v [K, D_v] and r_l^t = W_l^t R + b_l^t [K, D_t]. Before the first of
these blocks the tokens are inserted after CLS / SOS, before the later ones they overwrite those K
positions (``trainers/representation_tokens.py``). The text input is the dataset's hand-written
template (no learned context). Then, with frozen CLIP's ``proj`` and a learnable ``proj_rep``:

    v̂     = normalize(ln_post(x_CLS) · proj)                 class-token feature [B, E]
    v̂_rep = normalize(mean_k ln_post(x_k) · proj_rep)        representation feature [B, E]
    t̂     = normalize(f_t(template(c) with r^t))            [C, E]
    s = 100 · v̂ t̂ᵀ,  s_rep = 100 · v̂_rep t̂ᵀ,  s_fused = α s + (1 − α) s_rep              α = ALPHA (0.7)
    L = α CE(s, y) + (1 − α) CE(s_rep, y) + λ (1 − mean_b cos(v̂, v̂_clip)) + λ (1 − mean_c cos(t̂, t̂_clip))

v̂_clip is frozen CLIP's image feature, t̂_clip its text feature of the same template; λ = REG_WEIGHT.
Decoupled inference (``TASK``): base-to-new (``B2N``) scores the base classes with s_fused and the new
ones with s alone; few-shot (``FS``) uses s_fused; cross-dataset / DG (``CD``) uses s_fused on ImageNet
(the source) and s on every target.

Upstream interface kept: trainer ``MMRL``, node ``TRAINER.MMRL`` with ALPHA, REG_WEIGHT, REP_LAYERS,
REP_DIM, N_REP_TOKENS, PREC; the registered name ``MultiModalRepresentationLearner`` with upstream's
keys ``representation_learner.compound_rep_tokens`` [K, d_r],
``representation_learner.compound_rep_tokens_r2{v,t}proj.<i>.{weight,bias}`` and
``image_encoder.proj_rep`` [D_v, E]; the configs ``vit_b16`` (base-to-new), ``vit_b16_imagenet``
(ImageNet), ``vit_b16_cross_datasets`` and ``vit_b16_few_shot``; upstream's per-dataset
REG_WEIGHT (and EuroSAT's REP_DIM 2048) of its ``trainers/config.py``.

Where and why we depart from upstream:

* ``TASK`` lives in the method node (upstream: a top-level ``cfg.TASK`` its scripts pass), so the
  configs carry it: ``vit_b16``/``vit_b16_imagenet`` B2N, ``vit_b16_cross_datasets`` CD,
  ``vit_b16_few_shot`` FS. Upstream's few-shot ImageNet runs use ``vit_b16_imagenet`` with TASK FS;
  our few-shot protocol has one config for every dataset (``vit_b16_few_shot``).
* Upstream's per-dataset table overrides the config file's REG_WEIGHT / REP_DIM and is overridden
  by the command line. Here ``DATASET_OPTIONS True`` applies the table over whatever the config and
  the command line say (we cannot tell them apart); ``False`` uses REG_WEIGHT / REP_DIM as given.
  The cross-dataset config sets it False with REG_WEIGHT 0.2 and REP_DIM 512, what upstream's
  cross-dataset scripts pass (so the EuroSAT target is evaluated with the ImageNet model's width).
* Our checkpoints hold only the learnable tensors (upstream saves the whole model, frozen CLIP and
  the class-prompt embeddings included); upstream files load with those extra keys ignored.
  Evaluation loads the epoch asked (upstream's loader takes ``model-best`` or whichever
  ``model.pth`` file the directory listing gives last, ignoring ``--load-epoch``).
* The frozen teacher is the shared backbone (upstream loads a second CLIP); its text features are
  encoded on the first training step, and both teachers run in the backbone's precision.
* ``proj_rep`` starts from scale·N(0, 1), scale = D_v^-0.5, as upstream's freshly built CLIP draws
  it, but not from the same random stream (upstream draws it among the whole CLIP's initial
  weights, which are then overwritten by the pre-trained ones); every block's projections start
  equal, as upstream's deep copies.
* The logit scale is upstream's fixed 100 (= OpenAI CLIP's exp(logit_scale)); REP_LAYERS are
  checked (increasing, inside the backbone) instead of silently ignoring out-of-range blocks.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from dassl.engine import TRAINER_REGISTRY

from .clip_backbone import ClipBackbone
from .losses import knowledge_guidance_loss
from .models import ModelOutput, PromptedCLIP, TextFeatureCache, class_level
from .prompts import clean_classname
from .representation_tokens import check_token_layers, encode_image_with_tokens, encode_text_with_tokens
from .teachers import ZeroShotClassifier
from .templates import dataset_template
from .trainer_base import ClipPromptTrainer, add_prompt_keys

LOGIT_SCALE = 100.0
TASKS = ("B2N", "FS", "CD")
# Upstream's per-dataset options (its trainers/config.py), applied with DATASET_OPTIONS True.
DATASET_OPTIONS = {
    "StanfordCars": {"REG_WEIGHT": 7.0},
    "FGVCAircraft": {"REG_WEIGHT": 6.0},
    "SUN397": {"REG_WEIGHT": 6.0},
    "DescribableTextures": {"REG_WEIGHT": 6.0},
    "Food101": {"REG_WEIGHT": 5.0},
    "OxfordFlowers": {"REG_WEIGHT": 4.0},
    "UCF101": {"REG_WEIGHT": 3.0},
    "ImageNet": {"REG_WEIGHT": 0.5},
    "Caltech101": {"REG_WEIGHT": 0.5},
    "OxfordPets": {"REG_WEIGHT": 0.2},
    "EuroSAT": {"REP_DIM": 2048, "REG_WEIGHT": 0.01},
}


def extend_cfg(cfg) -> None:
    node = add_prompt_keys(cfg, "MMRL", PREC="amp", ALPHA=0.7, REG_WEIGHT=1.0, REP_LAYERS=[6, 7, 8, 9, 10, 11, 12],
                           REP_DIM=512, N_REP_TOKENS=5, TASK="B2N", DATASET_OPTIONS=True)
    del node["N_CTX"], node["CTX_INIT"]  # no learned context: the text input is the hand-written template


def fuses_at_test(task: str, subsample: str, dataset_name: str) -> bool:
    """Decoupled inference: whether evaluation scores with s_fused (else the class-token logits s)."""
    if task == "B2N":
        return subsample == "base"
    if task == "FS":
        return True
    return dataset_name == "ImageNet"  # CD: the source dataset


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------
class RepresentationSpace(nn.Module):
    """R [K, d_r] and its per-block projections into each tower (upstream's ``representation_learner``)."""

    def __init__(self, n_tokens: int, rep_dim: int, vision_width: int, text_width: int, layers: Sequence[int]):
        super().__init__()
        self.layers = list(layers)
        self.compound_rep_tokens = nn.Parameter(torch.empty(n_tokens, rep_dim))
        nn.init.normal_(self.compound_rep_tokens, std=0.02)
        to_vision, to_text = nn.Linear(rep_dim, vision_width), nn.Linear(rep_dim, text_width)
        self.compound_rep_tokens_r2vproj = nn.ModuleList(copy.deepcopy(to_vision) for _ in self.layers)
        self.compound_rep_tokens_r2tproj = nn.ModuleList(copy.deepcopy(to_text) for _ in self.layers)

    def layer_tokens(self) -> Tuple[Dict[int, torch.Tensor], Dict[int, torch.Tensor]]:
        """({0-based block: text tokens [K, D_t]}, {0-based block: vision tokens [K, D_v]})."""
        rep = self.compound_rep_tokens
        text = {layer - 1: proj(rep) for layer, proj in zip(self.layers, self.compound_rep_tokens_r2tproj)}
        vision = {layer - 1: proj(rep) for layer, proj in zip(self.layers, self.compound_rep_tokens_r2vproj)}
        return text, vision


class RepresentationLearner(nn.Module):
    """The registered module: the representation space and the image side's ``proj_rep``."""

    def __init__(self, space: RepresentationSpace, vision_width: int, embed_dim: int):
        super().__init__()
        self.representation_learner = space
        self.image_encoder = nn.Module()
        self.image_encoder.proj_rep = nn.Parameter(vision_width ** -0.5 * torch.randn(vision_width, embed_dim))


@dataclass
class RepresentationOutput(ModelOutput):
    """``logits``: s_fused in training, the decoupled choice in evaluation; ``image_features`` v̂,
    ``text_features`` t̂. Training steps add the frozen teachers (None in evaluation)."""

    class_logits: Optional[torch.Tensor] = None            # s      [B, C]
    rep_logits: Optional[torch.Tensor] = None              # s_rep  [B, C]
    zs_image_features: Optional[torch.Tensor] = None       # v̂_clip [B, E] (no grad)
    zs_text_features: Optional[torch.Tensor] = class_level()  # t̂_clip [C, E] (constant)


class RepresentationCLIP(TextFeatureCache, PromptedCLIP):
    """Frozen CLIP with MMRL's representation tokens in both towers (``learnable``: a ``RepresentationLearner``)."""

    def __init__(self, backbone: ClipBackbone, learner: RepresentationLearner, classnames: Sequence[str],
                 template: str, alpha: float, fuse_at_test: bool):
        super().__init__(backbone, learner)
        self.alpha, self.fuse_at_test = alpha, fuse_at_test
        tokens = backbone.tokenize([template.format(clean_classname(c)) for c in classnames])
        self.register_buffer("prompt_embeddings", backbone.embed_tokens(tokens), persistent=False)  # [C, T, D_t]
        self.register_buffer("eot", tokens.argmax(dim=-1), persistent=False)
        self.teacher = ZeroShotClassifier(backbone, classnames, template)

    def text_features(self, text_tokens: Dict[int, torch.Tensor]) -> torch.Tensor:
        features = encode_text_with_tokens(self.backbone, self.prompt_embeddings, self.eot, text_tokens)
        return F.normalize(features, dim=-1)                                                   # t̂ [C, E]

    def image_features(self, image: torch.Tensor, vision_tokens: Dict[int, torch.Tensor]):
        features, inserted = encode_image_with_tokens(self.backbone, image, vision_tokens)
        rep = inserted.mean(dim=1) @ self.learnable.image_encoder.proj_rep
        return F.normalize(features, dim=-1), F.normalize(rep, dim=-1)                         # v̂, v̂_rep [B, E]

    def forward(self, image: torch.Tensor) -> RepresentationOutput:
        text_tokens, vision_tokens = self.learnable.representation_learner.layer_tokens()
        text = self.cached(lambda: self.text_features(text_tokens))
        image_features, rep_features = self.image_features(image, vision_tokens)
        class_logits, rep_logits = LOGIT_SCALE * image_features @ text.t(), LOGIT_SCALE * rep_features @ text.t()
        fused = self.alpha * class_logits + (1 - self.alpha) * rep_logits
        output = RepresentationOutput(fused if self.learning or self.fuse_at_test else class_logits,
                                      image_features, text, class_logits, rep_logits)
        if self.learning:
            output.zs_image_features = self.frozen_embedding(image)
            output.zs_text_features = self.teacher.features()
        return output


class RepresentationLoss(nn.Module):
    """α CE(s) + (1 − α) CE(s_rep) + λ (1 − cos(v̂, v̂_clip)) + λ (1 − cos(t̂, t̂_clip)), batch/class means."""

    def __init__(self, alpha: float, reg_weight: float):
        super().__init__()
        self.alpha, self.reg_weight = alpha, reg_weight

    def forward(self, out: RepresentationOutput, label: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        terms = {
            "loss_ce": self.alpha * F.cross_entropy(out.class_logits, label),
            "loss_ce_rep": (1 - self.alpha) * F.cross_entropy(out.rep_logits, label),
            "loss_reg_image": self.reg_weight * knowledge_guidance_loss(out.image_features, out.zs_image_features),
            "loss_reg_text": self.reg_weight * knowledge_guidance_loss(out.text_features, out.zs_text_features),
        }
        return sum(terms.values()), terms


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------
@TRAINER_REGISTRY.register()
class MMRL(ClipPromptTrainer):
    CFG_NODE = "MMRL"
    MODEL_NAME = "MultiModalRepresentationLearner"
    CHOICES = {"TASK": TASKS}
    PER_DATASET_OPTIONS = DATASET_OPTIONS

    def build_clip_model(self, backbone: ClipBackbone, classnames: Sequence[str]) -> nn.Module:
        options, dataset = self.options, self.cfg.DATASET
        backbone.require_vit("MMRL's representation tokens")
        layers = list(options.REP_LAYERS)
        check_token_layers(layers, min(backbone.num_vision_layers, backbone.num_text_layers), "TRAINER.MMRL.REP_LAYERS")
        space = RepresentationSpace(options.N_REP_TOKENS, options.REP_DIM, backbone.vision_width,
                                    backbone.text_width, layers)
        learner = RepresentationLearner(space, backbone.vision_width, backbone.embed_dim)
        fuse = fuses_at_test(options.TASK, dataset.SUBSAMPLE_CLASSES, dataset.NAME)
        template = dataset_template(dataset.NAME)
        print(f'MMRL: {options.N_REP_TOKENS} representation tokens (d_r = {options.REP_DIM}) in blocks {layers}, '
              f'template "{template}", alpha = {options.ALPHA}, REG_WEIGHT = {options.REG_WEIGHT}, '
              f"task {options.TASK}: evaluation scores with {'s_fused' if fuse else 's (class token)'}")
        return RepresentationCLIP(backbone, learner, classnames, template, options.ALPHA, fuse)

    def build_criterion(self) -> RepresentationLoss:
        return RepresentationLoss(self.options.ALPHA, self.options.REG_WEIGHT)
