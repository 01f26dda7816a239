"""CoPrompt (Roy, Etemad, ICLR 2024): consistency-guided prompt learning.

MaPLe's coupled prompts (``deep_prompts.MaPLeCLIP``: n = N_CTX tokens to depth J = PROMPT_DEPTH)
plus two residual adapters on the features, A(x) = ReLU(W2 ReLU(W1 x)) (E → E/4 → E, no biases):

    v̂ = normalize(0.1 · A_v(f̂_v) + 0.9 · f̂_v)         f̂_v: MaPLe's prompted image feature, on view 1
    t̂ = normalize(0.2 · A_t(f̂_t) + 0.8 · f̂_t)         f̂_t: MaPLe's prompted class features
    s = exp(logit_scale) · v̂ t̂ᵀ
    L = CE(s, y) + W · [(1 − mean_c cos(t̂_c, d̂_c^r)) + (1 − mean_b cos(v̂_b, v̂_b^clip))]   (DISTILL cosine)
      or CE + W · [MSE(t̂, d̂^r) + MSE(v̂, v̂^clip)]                                        (DISTILL mse)

d̂_c^r is frozen CLIP's normalised feature of description r of class c, from the dataset's file of
LLM-written class descriptions (``trainers/descriptions.py``), with one index r drawn per step for
all classes; v̂^clip is frozen CLIP's normalised feature of a second augmented view of the image
(``DATALOADER.K_TRANSFORMS 2``, RandAugment). Evaluation uses s on the test image alone.

Upstream interface kept: trainer ``CoPrompt``, its node's keys (N_CTX, CTX_INIT, PREC, PROMPT_DEPTH),
the registered name ``MultiModalPromptLearner`` with upstream's keys
(``prompt_learner.{ctx, proj.*, compound_prompts_text.<j>, compound_prompt_projections.<j>.*}``,
``adapter_{image,text}.fc.{0,2}.weight``), the descriptions files ``gpt_file/<name>_prompt.json``
in upstream's format, the config ``coprompt`` and upstream's per-dataset table (its
``trainers/constants.py``: PROMPT_DEPTH, N_CTX, W; Food101's 5 epochs are ``coprompt_food101``).

Where and why we depart from upstream:

* The node is ``TRAINER.COPROMPT`` (upstream: ``TRAINER.CoPrompt``): config keys here are upper case,
  which the reading of configs printed into old logs (``run_identity``) relies on.
* ``W`` and ``DISTILL`` live in the method's node (upstream: ``TRAINER.W``, ``TRAINER.DISTILL``), so a
  run's identity sees them; the per-dataset table applies when ``DATASET_OPTIONS`` is True (upstream
  applies it always, after the command line). The kit sets it False, as its 3-block CLIP cannot
  take the table's depth 12.
* The descriptions file is read from ``DESCRIPTIONS`` (default ``<DATASET.ROOT>/gpt_file/<name>_prompt.json``;
  upstream: ``gpt_file/`` of its working directory); a missing file, class or unequal count is one
  error naming the file and the key. Upstream also caches the encoded descriptions under ``cache/``;
  we encode them on the first training step, with the shared frozen backbone in its precision
  (upstream: a second CLIP).
* The adapters act on the normalised MaPLe features (upstream: on the raw ones). The adapter is
  positively homogeneous (linear maps without bias and ReLU), so after the final normalisation the
  features are the same up to rounding.
* The description index is drawn from torch's generator (upstream: Python's ``random``), so the same
  seed draws other indices.
* Any ViT backbone: the adapters' width is the backbone's embedding (upstream: 512) and the prompts'
  widths its towers' (upstream: 512 / 768, ViT-B/16 only); learnable tensors stay fp32 under fp16
  towers (the shared precision policy; upstream casts the adapters to fp16).
* Cross-dataset / DG (no upstream recipe): ``coprompt_cross_datasets`` trains ImageNet with the
  table's ImageNet values (N_CTX 4, depth 12, W 8) written in the config and the table off, so every
  target is evaluated with the shapes the model was trained with.
* Base-to-new evaluation loads the last epoch (upstream's README passes 8, and 5 for Food101: the same).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from dassl.engine import TRAINER_REGISTRY

from .clip_backbone import ClipBackbone
from .deep_prompts import MaPLeCLIP, MultiModalPromptLearner, build_maple_learner
from .descriptions import default_path, read_descriptions
from .losses import knowledge_guidance_loss
from .models import ModelOutput, class_level, clip_logits
from .prompts import TextEncoding
from .trainer_base import ClipPromptTrainer, add_prompt_keys

IMAGE_ADAPTER_RATIO, TEXT_ADAPTER_RATIO = 0.1, 0.2  # upstream's residual ratios (hard-coded there too)
# Upstream's per-dataset options (its trainers/constants.py), applied with DATASET_OPTIONS True.
PER_DATASET = {
    "ImageNet": dict(PROMPT_DEPTH=12, N_CTX=4, W=8.0),
    "Caltech101": dict(PROMPT_DEPTH=12, N_CTX=4, W=4.0),
    "OxfordPets": dict(PROMPT_DEPTH=12, N_CTX=2, W=0.1),
    "StanfordCars": dict(PROMPT_DEPTH=12, N_CTX=4, W=4.0),
    "OxfordFlowers": dict(PROMPT_DEPTH=9, N_CTX=4, W=8.0),
    "Food101": dict(PROMPT_DEPTH=9, N_CTX=4, W=0.5),
    "FGVCAircraft": dict(PROMPT_DEPTH=9, N_CTX=4, W=2.0),
    "SUN397": dict(PROMPT_DEPTH=12, N_CTX=4, W=8.0),
    "DescribableTextures": dict(PROMPT_DEPTH=12, N_CTX=2, W=8.0),
    "EuroSAT": dict(PROMPT_DEPTH=12, N_CTX=2, W=0.1),
    "UCF101": dict(PROMPT_DEPTH=12, N_CTX=4, W=2.0),
}


def extend_cfg(cfg) -> None:
    add_prompt_keys(cfg, "COPROMPT", N_CTX=2, CTX_INIT="a photo of a", PREC="fp16", PROMPT_DEPTH=9, W=8.0,
                    DISTILL="cosine", DESCRIPTIONS="", DATASET_OPTIONS=True)


class Adapter(nn.Module):
    """E → E/reduction → E, bias-free linear maps each followed by ReLU (upstream's ``fc`` keys 0 and 2)."""

    def __init__(self, dim: int, reduction: int = 4):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(dim, dim // reduction, bias=False), nn.ReLU(),
                                nn.Linear(dim // reduction, dim, bias=False), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def adapted(adapter: Adapter, features: torch.Tensor, ratio: float) -> torch.Tensor:
    """normalize(ratio · A(x) + (1 − ratio) · x)."""
    return F.normalize(ratio * adapter(features) + (1 - ratio) * features, dim=-1)


class CoPromptModules(nn.Module):
    """The registered module: MaPLe's ``prompt_learner`` and the two adapters (upstream key names)."""

    def __init__(self, prompt_learner: MultiModalPromptLearner, embed_dim: int):
        super().__init__()
        self.prompt_learner = prompt_learner
        self.adapter_image = Adapter(embed_dim)
        self.adapter_text = Adapter(embed_dim)


@dataclass
class ConsistencyOutput(ModelOutput):
    """s, v̂, t̂, and in training steps the frozen targets (None in evaluation)."""

    zs_image_features: Optional[torch.Tensor] = None            # v̂^clip [B, E] of the second view
    zs_text_features: Optional[torch.Tensor] = class_level()    # d̂^r [C, E], this step's descriptions


class CoPromptCLIP(MaPLeCLIP):
    """MaPLe's prompted CLIP with adapters, and the frozen targets of the consistency terms."""

    def __init__(self, backbone: ClipBackbone, learnable: CoPromptModules, descriptions: Sequence[Sequence[str]],
                 text_encoding: TextEncoding = TextEncoding()):
        super().__init__(backbone, learnable, text_encoding)
        self.descriptions = [list(row) for row in descriptions]            # [C][N] sentences
        self._description_features: Optional[torch.Tensor] = None

    def description_features(self) -> torch.Tensor:
        """d̂ [N, C, E]: frozen CLIP's normalised feature of every description; encoded once."""
        if self._description_features is None:
            per_class = [self.backbone.encode_tokens(self.backbone.tokenize(row)) for row in self.descriptions]
            self._description_features = F.normalize(torch.stack(per_class, dim=1), dim=-1)
        return self._description_features

    def adapted_text_features(self) -> torch.Tensor:
        return adapted(self.learnable.adapter_text, self.text_features(), TEXT_ADAPTER_RATIO)

    def forward(self, image: torch.Tensor, teacher_view: Optional[torch.Tensor] = None) -> ConsistencyOutput:
        image_features = adapted(self.learnable.adapter_image, self.visual_embedding(image), IMAGE_ADAPTER_RATIO)
        text_features = self.cached(self.adapted_text_features)
        output = ConsistencyOutput(clip_logits(self.backbone, image_features, text_features), image_features,
                                   text_features)
        if self.learning:
            descriptions = self.description_features()
            index = int(torch.randint(descriptions.shape[0], ()))
            output.zs_text_features = descriptions[index]
            output.zs_image_features = self.frozen_embedding(image if teacher_view is None else teacher_view)
        return output


class ConsistencyLoss(nn.Module):
    """CE + W · (text consistency + image consistency), cosine or MSE."""

    def __init__(self, weight: float, distill: str):
        super().__init__()
        self.weight, self.distill = weight, distill

    def consistency(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return knowledge_guidance_loss(a, b) if self.distill == "cosine" else F.mse_loss(a.float(), b.float())

    def forward(self, out: ConsistencyOutput, label: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        terms = {"loss_ce": F.cross_entropy(out.logits.float(), label),
                 "loss_text": self.weight * self.consistency(out.text_features, out.zs_text_features),
                 "loss_image": self.weight * self.consistency(out.image_features, out.zs_image_features)}
        return sum(terms.values()), terms


@TRAINER_REGISTRY.register()
class CoPrompt(ClipPromptTrainer):
    CFG_NODE = "COPROMPT"
    MODEL_NAME = "MultiModalPromptLearner"
    CHOICES = {"DISTILL": ("cosine", "mse")}
    PER_DATASET_OPTIONS = PER_DATASET

    def descriptions_path(self) -> str:
        return self.options.DESCRIPTIONS or default_path(self.cfg.DATASET.ROOT, self.cfg.DATASET.NAME)

    def build_clip_model(self, backbone: ClipBackbone, classnames: Sequence[str]) -> nn.Module:
        options = self.options
        path = self.descriptions_path()
        descriptions = read_descriptions(path, classnames, "TRAINER.COPROMPT.DESCRIPTIONS")
        learner, template = build_maple_learner(backbone, classnames, options, self.CFG_NODE)
        print(f'CoPrompt: template "{template}", {learner.n_ctx} context vectors, prompt depth {options.PROMPT_DEPTH}, '
              f"W = {options.W} ({options.DISTILL}), {len(descriptions[0])} descriptions per class from {path}")
        return CoPromptCLIP(backbone, CoPromptModules(learner, backbone.embed_dim), descriptions,
                            TextEncoding.from_options(options))

    def build_criterion(self) -> ConsistencyLoss:
        return ConsistencyLoss(self.options.W, self.options.DISTILL)

    def model_inputs(self, batch) -> Tuple[tuple, torch.Tensor]:
        """(view 1, view 2) of every image: ``DATALOADER.K_TRANSFORMS 2`` gives ``img`` as two views."""
        views, label = batch["img"], batch["label"].to(self.device)
        if not isinstance(views, (list, tuple)) or len(views) < 2:
            raise ValueError("CoPrompt trains on two augmented views of each image: set DATALOADER.K_TRANSFORMS 2 "
                             "(as configs/trainers/CoPrompt/coprompt.yaml does).")
        return (views[0].to(self.device), views[1].to(self.device)), label
