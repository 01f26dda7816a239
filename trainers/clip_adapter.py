"""CLIP-Adapter: a residual bottleneck MLP on frozen CLIP image features.

Gao et al., "CLIP-Adapter: Better Vision-Language Models with Feature Adapters", IJCV 2024
(github.com/gaopengcuhk/CLIP-Adapter, ``clip_adapter.py``: a Dassl trainer run with CoOp's
commands). With f the frozen image features and A(f) = ReLU(W₂ ReLU(W₁ f)) (no biases, hidden
width E / ``REDUCTION``)::

    f' = RATIO · A(f) + (1 − RATIO) · f         logits = logit_scale · normalize(f') · W_zsᵀ

with RATIO 0.2 and REDUCTION 4 as upstream, W_zs the normalised features of the dataset's
hand-written template (CoOp's templates), and only the adapter trained (cross-entropy; CoOp's
schedule, ``configs/trainers/CLIPAdapter/vit_b16.yaml``). Checkpoints use upstream's registered
name and keys (``clip_adapter/``, ``fc.0.weight``, ``fc.2.weight``), so upstream's files evaluate
here with ``--eval-only --model-dir`` and ours there.

Departures from upstream, and why:

* the adapter's width is the backbone's embedding width (upstream hard-codes 1024, RN50's, so its
  code runs only on RN50);
* the text features are encoded once (upstream re-encodes the fixed prompts at every forward:
  the same features, many times the cost);
* the frozen CLIP runs in ``TRAINER.CLIPADAPTER.PREC`` (default fp32, upstream's
  ``clip_model.float()``), through the shared backbone.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from yacs.config import CfgNode as CN

from dassl.engine import TRAINER_REGISTRY

from .models import FixedTextCLIP
from .templates import dataset_template, encode_templates
from .trainer_base import ClipPromptTrainer


def extend_cfg(cfg):
    cfg.TRAINER.CLIPADAPTER = CN(dict(PREC="fp32", REDUCTION=4, RATIO=0.2))


class ResidualAdapter(nn.Module):
    """A(f) = ReLU(W₂ ReLU(W₁ f)), upstream's ``Adapter`` (same parameter names)."""

    def __init__(self, width: int, reduction: int):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(width, width // reduction, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(width // reduction, width, bias=False), nn.ReLU(inplace=True))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)


class AdaptedImageCLIP(FixedTextCLIP):
    """Zero-shot CLIP's text side; the image side mixed with its adapted version."""

    def __init__(self, backbone, adapter: ResidualAdapter, class_features: torch.Tensor, ratio: float):
        super().__init__(backbone, adapter, class_features)
        self.ratio = ratio

    def raw_image_features(self, image: torch.Tensor) -> torch.Tensor:
        frozen = self.frozen_image_features(image)
        return self.ratio * self.learnable(frozen) + (1.0 - self.ratio) * frozen


@TRAINER_REGISTRY.register()
class CLIPAdapter(ClipPromptTrainer):
    CFG_NODE = "CLIPADAPTER"
    MODEL_NAME = "clip_adapter"  # upstream's registered name

    def build_clip_model(self, backbone, classnames):
        template = dataset_template(self.cfg.DATASET.NAME)
        print(f"Prompt: {template}")
        class_features = encode_templates(backbone, classnames, [template]).float()
        adapter = ResidualAdapter(backbone.embed_dim, self.options.REDUCTION)
        return AdaptedImageCLIP(backbone, adapter, class_features, self.options.RATIO)
